#!/bin/sh
# Fault-scenario activity "count": records each run of the job (one line per run in
# runs.log, in the job's work folder, which every run of the job shares), sleeps
# $duration seconds, and gives the record as its result.
set -eu
printf '%s\n' "$$" >> runs.log
sleep "$duration"
cp runs.log output.txt
