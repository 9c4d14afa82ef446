#!/bin/sh
# Activity "echo" (activity_descriptions/echo.xml): write $text and a newline to output.txt.
# The value arrives as an environment variable; it is never part of the command line.
set -eu
printf '%s\n' "$text" > output.txt
