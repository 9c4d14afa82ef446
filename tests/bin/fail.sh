#!/bin/sh
# Test activity "fail": writes a partial output and a message on stderr, then exits 3.
echo "partial" > output.txt
echo "something went wrong: $reason" >&2
exit 3
