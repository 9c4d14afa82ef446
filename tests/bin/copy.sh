#!/bin/sh
# Test activity "copy": the input file, then a line of text.
set -eu
cat "$input" > output.txt
printf '%s\n' "$suffix" >> output.txt
