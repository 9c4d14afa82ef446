#!/bin/sh
# Fault-scenario activity "fill": writes $megabytes MB to its output, more than the data
# dir holds, so that it runs out of space.
set -eu
head -c "${megabytes}M" /dev/zero > output.txt
