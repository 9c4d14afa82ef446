#!/bin/sh
# Fault-scenario activity "count" of outages.py: how many times it ran in this job folder (a second run
# of the same job would find its first line), as its output.
set -eu
echo run >> runs.txt
wc -l < runs.txt | tr -d ' ' > output.txt
