#!/bin/sh
# Activity "sleep" (activity_descriptions/sleep.xml): sleep $duration seconds, then record it.
# $duration is checked by the server (a double between 0 and 3600); fractional seconds need
# a sleep(1) that accepts them, as GNU coreutils and busybox do.
set -eu
sleep "$duration"
printf 'slept %s\n' "$duration" > output.txt
