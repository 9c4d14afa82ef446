#!/bin/sh
# Test activity "tree": a process tree (two children and a grandchild) that lives until
# stopped. Each process carries $marker in its argv so the test can find it.
python3 -c 'import sys, time; time.sleep(300)' "$marker" &
sh -c 'python3 -c "import sys, time; time.sleep(300)" "$1" & wait' tree-child "$marker" &
wait
