#!/usr/bin/env bash
# A single-node SLURM cluster for development and CI, run as root on this machine.
#
#   scripts/slurm_cluster.sh install   apt-get install slurm-wlm and munge (idempotent)
#   scripts/slurm_cluster.sh start     write the config, start munged, slurmctld and slurmd,
#                                      and wait until a trivial job runs (bounded)
#   scripts/slurm_cluster.sh stop      stop slurmd and slurmctld (munged is left running)
#   scripts/slurm_cluster.sh restart   stop the cluster (also one another checkout started),
#                                      then start this checkout's
#   scripts/slurm_cluster.sh status    show what runs, sinfo and squeue
#   scripts/slurm_cluster.sh stop-slurmd / start-slurmd
#                                      stop / start only the node daemon of the running
#                                      cluster (tests of a node failure)
#
# One cluster per machine (fixed ports). If `start` finds a working cluster that another
# checkout of OPUS started (its own state folder and configuration), it uses that one and
# leaves it running; if that cluster does not work or its state folder is gone, it stops it
# and starts this checkout's.
#
# State, configuration, logs and pid files live in ${OPUS_SLURM_DIR:-<repo>/var/slurm}; the
# configuration is also copied to /etc/slurm/slurm.conf, where the Debian client commands
# (sbatch, squeue, scontrol, scancel) look for it, so no SLURM_CONF is needed by the tests.
# There is no systemd here: the daemons are started directly and daemonise themselves.
#
# Settings chosen for tests (see the comments in the generated slurm.conf):
# no cgroups (proctrack/linuxproc, task/none), no accounting daemon (sacct does not work;
# finished jobs are recorded by jobcomp/filetxt in log/jobcomp.txt), short timeouts, no
# requeue of batch jobs after a node failure.
#
# Environment: OPUS_SLURM_DIR (state folder), OPUS_SLURM_START_TIMEOUT (seconds, default 60),
# OPUS_SLURM_MIN_JOB_AGE (seconds a finished job stays visible in squeue/scontrol, default 60).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLURM_DIR="${OPUS_SLURM_DIR:-$REPO_ROOT/var/slurm}"
START_TIMEOUT="${OPUS_SLURM_START_TIMEOUT:-60}"
MIN_JOB_AGE="${OPUS_SLURM_MIN_JOB_AGE:-60}"

CONF="$SLURM_DIR/etc/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
MARKER="# Managed by OPUS scripts/slurm_cluster.sh"
CTLD_PID="$SLURM_DIR/run/slurmctld.pid"
SLURMD_PID="$SLURM_DIR/run/slurmd.pid"
CTLD_LOG="$SLURM_DIR/log/slurmctld.log"
SLURMD_LOG="$SLURM_DIR/log/slurmd.log"
MUNGE_LOG=/var/log/munge/munged.log

log() { printf 'slurm_cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it starts slurmctld, slurmd and munged)"
}

# ---------------------------------------------------------------------------- install

do_install() {
    need_root
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        log "slurm-wlm and munge are already installed"
        return 0
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends slurm-wlm munge \
        >/tmp/opus-slurm-apt.log 2>&1; then
        apt-get update -q >/tmp/opus-slurm-apt-update.log 2>&1 || true
        apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends slurm-wlm munge \
            >/tmp/opus-slurm-apt.log 2>&1 || { tail -n 30 /tmp/opus-slurm-apt.log >&2; die "apt-get failed"; }
    fi
    log "installed: $(slurmctld -V)"
}

# ---------------------------------------------------------------------------- helpers

pid_alive() {  # pid_alive PIDFILE NAME
    local pid
    [ -s "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # guard against a recycled pid
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

daemon_pid() {  # daemon_pid PIDFILE NAME: the pid of our daemon, even if its pid file is lost
    local pid
    if pid_alive "$1" "$2"; then cat "$1"; return 0; fi
    # only a daemon started with our configuration file (e.g. after var/ was deleted)
    for pid in $(pgrep -x "$2" 2>/dev/null); do
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-f $CONF"; then
            echo "$pid"; return 0
        fi
    done
    return 1
}

node_name() { hostname -s; }

daemon_conf() {  # daemon_conf PID: the configuration file a slurm daemon was started with
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | awk 'prev == "-f" { print; exit } { prev = $0 }'
}

foreign_pids() {  # slurmctld / slurmd processes started with another configuration than ours
    local pid
    for pid in $(pgrep -x slurmctld 2>/dev/null) $(pgrep -x slurmd 2>/dev/null); do
        [ "$(daemon_conf "$pid")" = "$CONF" ] || echo "$pid"
    done
}

active_conf() {  # the configuration of the running slurmctld (ours if none runs)
    local pid conf
    for pid in $(pgrep -x slurmctld 2>/dev/null); do
        conf="$(daemon_conf "$pid")"
        [ -n "$conf" ] && { echo "$conf"; return 0; }
    done
    echo "$CONF"
}

conf_value() {  # conf_value FILE KEY
    sed -n "s/^$2=//p" "$1" 2>/dev/null | head -n1
}

stop_pids() {  # stop_pids PID...: SIGTERM, then SIGKILL after 10 s
    local pid
    [ "$#" -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for _ in $(seq 1 100); do
        for pid in "$@"; do kill -0 "$pid" 2>/dev/null && break; pid=""; done
        [ -z "$pid" ] && return 0
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null || true
}

ensure_hostname() {
    local host
    host="$(node_name)"
    if ! getent hosts "$host" >/dev/null 2>&1; then
        log "adding $host to /etc/hosts (127.0.0.1)"
        printf '127.0.0.1\t%s\n' "$host" >>/etc/hosts
    fi
}

ensure_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating a munge key"
        install -d -m 0700 -o munge -g munge /etc/munge
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -m 0755 -o munge -g munge /run/munge
    install -d -m 0700 -o munge -g munge /var/log/munge
    install -d -m 0711 -o munge -g munge /var/lib/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # a working munged, whoever started it
        return 0
    fi
    log "starting munged"
    rm -f /run/munge/munged.pid
    runuser -u munge -- /usr/sbin/munged || { tail -n 20 "$MUNGE_LOG" >&2 || true; die "munged failed to start"; }
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    tail -n 20 "$MUNGE_LOG" >&2 || true
    die "munge does not work"
}

real_memory() {
    # RealMemory a bit below what slurmd -C reports, else the node is drained as "Low RealMemory".
    local mem
    mem="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
    [ -n "$mem" ] || mem="$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo)"
    echo $(( mem * 95 / 100 ))
}

write_config() {
    local host cpus mem tmp
    host="$(node_name)"
    cpus="$(nproc)"
    mem="$(real_memory)"
    mkdir -p "$SLURM_DIR"/{etc,run,log,state/ctld,state/slurmd}
    chmod 0755 "$SLURM_DIR" "$SLURM_DIR"/{etc,run,log}
    tmp="$CONF.tmp"
    cat >"$tmp" <<EOF
$MARKER
# ($REPO_ROOT). Rewritten at every start: edit the script, not this file.
ClusterName=opus
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818

StateSaveLocation=$SLURM_DIR/state/ctld
SlurmdSpoolDir=$SLURM_DIR/state/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none

# No accounting daemon (sacct is unavailable); finished jobs are logged here instead.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/log/jobcomp.txt

SchedulerType=sched/backfill
# Start a batch job as soon as it is submitted (the default batches starts every 3 s).
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job would take the whole node's memory, and run alone.
DefMemPerCPU=1024
ReturnToService=2
# A UWS job runs once: a node failure ends it as NODE_FAIL instead of requeueing it.
JobRequeue=0

# Short timeouts for tests.
# A finished job stays visible to squeue/scontrol for MinJobAge seconds (default 300).
MinJobAge=$MIN_JOB_AGE
KillWait=2
OverTimeLimit=0
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
# slurmd stopped mid-job: the node goes DOWN (and its jobs NODE_FAIL) within ~30-60 s.
SlurmdTimeout=30
MessageTimeout=10
TCPTimeout=5
BatchStartTimeout=20
UnkillableStepTimeout=30

NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    mv "$tmp" "$CONF"
    chmod 0644 "$CONF"

    # Debian's binaries read /etc/slurm/slurm.conf: write a copy of ours there (a copy, not a
    # link, so that client commands keep working if the state folder is deleted), but never
    # clobber a configuration that someone else wrote.
    mkdir -p /etc/slurm
    if [ -e "$SYSTEM_CONF" ] && [ ! -L "$SYSTEM_CONF" ] && ! grep -qF "$MARKER" "$SYSTEM_CONF"; then
        local backup
        backup="$SYSTEM_CONF.opus-backup.$(date +%Y%m%d%H%M%S)"
        log "moving the existing $SYSTEM_CONF to $backup"
        mv "$SYSTEM_CONF" "$backup"
    fi
    cp "$CONF" "$SYSTEM_CONF.tmp"
    mv -f "$SYSTEM_CONF.tmp" "$SYSTEM_CONF"
    # No cgroup.conf is needed with linuxproc/task none; remove an empty stray one that
    # would only produce warnings.
    if [ -e /etc/slurm/cgroup.conf ] && [ ! -s /etc/slurm/cgroup.conf ]; then
        rm -f /etc/slurm/cgroup.conf
    fi
}

log_tails() {
    local f
    for f in "$CTLD_LOG" "$SLURMD_LOG" "$MUNGE_LOG"; do
        [ -e "$f" ] || continue
        printf '\n==== tail %s ====\n' "$f" >&2
        tail -n 25 "$f" >&2 || true
    done
}

fail() { log "$*"; log_tails; exit 1; }

ctld_up() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() { sinfo -h -N -n "$(node_name)" -o '%T' 2>/dev/null | head -n1; }

wait_until() {  # wait_until DEADLINE_EPOCH COMMAND...
    local deadline="$1"; shift
    until "$@"; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

node_ready() {
    local state
    state="$(node_state)"
    case "$state" in
        idle*|mixed*|allocated*) return 0 ;;
        down*|drain*|fail*)
            # left over from a previous run (e.g. slurmd killed): bring it back
            scontrol update NodeName="$(node_name)" State=RESUME >/dev/null 2>&1 || true
            return 1 ;;
        *) return 1 ;;
    esac
}

# ---------------------------------------------------------------------------- start / stop

do_start() {
    need_root
    command -v slurmctld >/dev/null || die "slurm is not installed: run '$0 install' first"
    local t0 deadline
    t0="$(date +%s)"
    deadline=$(( t0 + START_TIMEOUT ))

    ensure_hostname
    ensure_munge
    if [ ! -d "$SLURM_DIR/state/ctld" ] && daemon_pid "$CTLD_PID" slurmctld >/dev/null; then
        log "$SLURM_DIR/state was deleted under the running daemons: restarting them"
        do_stop
    fi
    local foreign conf
    foreign="$(foreign_pids | tr '\n' ' ')"
    if [ -n "${foreign// /}" ]; then
        conf="$(active_conf)"
        [ "$conf" != "$CONF" ] || conf="$(daemon_conf "${foreign%% *}")"
        if ! opus_managed "$conf"; then
            die "slurm daemons (pids $foreign) run with ${conf:-the default configuration}," \
                "which this script did not write: stop them first"
        fi
        if foreign_cluster_usable "$conf" && self_test "$deadline"; then
            log "using the running cluster of $conf (started by another checkout;" \
                "'$0 restart' takes it over) ($(( $(date +%s) - t0 )) s)"
            return 0
        fi
        log "stopping the cluster started with ${conf:-another configuration}" \
            "(pids $foreign): it does not work here or its state folder is gone"
        # shellcheck disable=SC2086
        stop_pids $foreign
    fi
    write_config

    local pid
    if pid="$(daemon_pid "$CTLD_PID" slurmctld)"; then
        log "slurmctld is already running (pid $pid); reconfiguring"
        scontrol reconfigure >/dev/null 2>&1 || true
    else
        log "starting slurmctld"
        slurmctld -f "$CONF" || fail "slurmctld failed to start"
    fi
    wait_until "$deadline" ctld_up || fail "slurmctld does not answer"

    if pid="$(daemon_pid "$SLURMD_PID" slurmd)"; then
        log "slurmd is already running (pid $pid)"
    else
        log "starting slurmd"
        slurmd -f "$CONF" || fail "slurmd failed to start"
    fi
    wait_until "$deadline" node_ready || fail "node $(node_name) is not idle: '$(node_state)'"
    self_test "$deadline" || fail "the cluster does not run jobs"
    log "cluster is up ($(( $(date +%s) - t0 )) s): node $(node_name), $(nproc) CPUs, config $CONF"
}

opus_managed() {  # opus_managed CONF: written by this script (here or in another checkout)
    local conf="$1"
    [ -n "$conf" ] && [ "$conf" != "$SYSTEM_CONF" ] || return 1
    [ -e "$conf" ] || return 0  # that checkout's state folder was deleted
    grep -qF "$MARKER" "$conf"
}

foreign_cluster_usable() {  # foreign_cluster_usable CONF: another checkout's cluster works
    local conf="$1" state
    [ -n "$conf" ] && [ -f "$conf" ] && grep -qF "$MARKER" "$conf" || return 1
    state="$(conf_value "$conf" StateSaveLocation)"
    [ -n "$state" ] && [ -d "$state" ] || return 1
    # the client commands read /etc/slurm/slurm.conf: it must be that cluster's
    cmp -s "$conf" "$SYSTEM_CONF" || return 1
    # both daemons run with it
    pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null || return 1
    ctld_up || return 1
    wait_until $(( $(date +%s) + 10 )) node_ready
}

self_test() {  # self_test DEADLINE: a trivial batch job and an srun must really run
    local deadline="$1" out jobid state=""
    # (sbatch --wait polls at 2, 4, 8, 10 s: poll here instead.)
    if ! out="$(cd /tmp && sbatch --parsable --job-name=opus-selftest --time=1 \
            --output=/dev/null --export=NONE --wrap=true 2>&1)"; then
        log "sbatch failed: $out"; log_tails; return 1
    fi
    jobid="${out%%;*}"
    job_done() {
        state="$(scontrol show job -o "$jobid" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')"
        case "$state" in PENDING|CONFIGURING|RUNNING|COMPLETING|"") return 1 ;; esac
    }
    if ! wait_until "$deadline" job_done; then
        log "trivial batch job $jobid did not finish (state '$state')"
        scancel "$jobid" 2>/dev/null || true
        log_tails; return 1
    fi
    [ "$state" = COMPLETED ] || { log "trivial batch job $jobid ended as $state"; log_tails; return 1; }
    if ! out="$(cd /tmp && timeout 20 srun --job-name=opus-selftest --time=1 true 2>&1)"; then
        log "srun true failed: $out"; log_tails; return 1
    fi
}

stop_daemon() {  # stop_daemon PIDFILE NAME
    local pid
    pid="$(daemon_pid "$1" "$2")" || { log "$2 is not running"; rm -f "$1"; return 0; }
    log "stopping $2 (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    log "$2 did not stop within 10 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

do_stop() {
    need_root
    stop_daemon "$SLURMD_PID" slurmd
    stop_daemon "$CTLD_PID" slurmctld
}

do_stop_slurmd() {  # only the node daemon of the running cluster (ours or another checkout's)
    need_root
    local pids
    pids="$(pgrep -x slurmd 2>/dev/null | tr '\n' ' ')"
    [ -n "${pids// /}" ] || { log "slurmd is not running"; return 0; }
    log "stopping slurmd (pid $pids)"
    # shellcheck disable=SC2086
    stop_pids $pids
}

do_start_slurmd() {
    need_root
    local conf deadline
    deadline=$(( $(date +%s) + START_TIMEOUT ))
    conf="$(active_conf)"
    if pgrep -x slurmd >/dev/null; then
        log "slurmd is already running"
    else
        log "starting slurmd ($conf)"
        slurmd -f "$conf" || fail "slurmd failed to start"
    fi
    ctld_up || fail "slurmctld does not answer"
    wait_until "$deadline" node_ready || fail "node $(node_name) is not idle: '$(node_state)'"
}

do_restart() {
    need_root
    do_stop
    local foreign
    foreign="$(foreign_pids | tr '\n' ' ')"
    if [ -n "${foreign// /}" ]; then
        log "stopping the cluster another checkout started (pids $foreign)"
        # shellcheck disable=SC2086
        stop_pids $foreign
    fi
    do_start
}

do_status() {
    local rc=0
    if pid_alive /run/munge/munged.pid munged; then echo "munged:    running"; else echo "munged:    stopped"; fi
    local pid
    local name
    for name in slurmctld slurmd; do
        if pid="$(daemon_pid "$SLURM_DIR/run/$name.pid" "$name")"; then
            printf '%-10s running (pid %s)\n' "$name:" "$pid"
        elif pid="$(pgrep -x "$name" | head -n1)" && [ -n "$pid" ]; then
            printf '%-10s running (pid %s) with %s\n' "$name:" "$pid" "$(daemon_conf "$pid")"
        else
            printf '%-10s stopped\n' "$name:"; rc=3
        fi
    done
    echo "config:    $(active_conf)"
    if [ "$rc" -eq 0 ]; then
        sinfo || rc=3
        squeue || true
    fi
    return "$rc"
}

case "${1:-}" in
    install) do_install ;;
    start) do_start ;;
    stop) do_stop ;;
    restart) do_restart ;;
    status) do_status ;;
    stop-slurmd) do_stop_slurmd ;;
    start-slurmd) do_start_slurmd ;;
    *) echo "usage: $0 {install|start|stop|restart|status|stop-slurmd|start-slurmd}" >&2; exit 2 ;;
esac
