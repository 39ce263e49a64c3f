#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for trying `SLURM=1 bash benchmark.sh ...` and
# for tests/test_slurm.py: Debian's slurm-wlm (slurmctld + slurmd) and munge, started as root.
#
#   sudo bash tools/local_slurm.sh           # install if missing, configure, start; then `sinfo`
#   sudo bash tools/local_slurm.sh --stop    # stop the daemons
#
# It writes /etc/slurm/slurm.conf (one node: this machine, all its cores and memory; one
# partition `local`; jobs requeued on request, as a cluster's preemption does), and keeps its
# state under /var/spool/slurm-local. Do not run it on a machine that is already in a cluster.
set -euo pipefail
if [ "${1:-}" = "--stop" ]; then
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "error: starting Slurm's daemons needs root (sudo bash $0)" >&2; exit 1; }
if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  echo "installing slurm-wlm and munge (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > /dev/null
fi

NODE=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # MB, less 1 GB for the system
SPOOL=/var/spool/slurm-local
mkdir -p /etc/slurm "$SPOOL/ctld" "$SPOOL/d" /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<EOF
# written by tools/local_slurm.sh: a one-node cluster on this machine
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10  # a requeued job may start again 10 s later (default 120)
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$SPOOL/slurmctld.pid
SlurmdPidFile=$SPOOL/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
SchedulerParameters=defer_batch=0
SchedulerType=sched/backfill
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# munge: the key that authenticates the daemons (and every sbatch) to each other
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2> /dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2> /dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged > /dev/null || su -s /bin/sh munge -c "munged" || munged --force

pgrep -x slurmctld > /dev/null || slurmctld
pgrep -x slurmd > /dev/null || slurmd
for _ in $(seq 60); do  # the node registers within seconds
  if sinfo -h -N -o "%t" 2> /dev/null | grep -qE "^(idle|mix|alloc)"; then
    sinfo
    exit 0
  fi
  sleep 1
done
echo "error: the Slurm node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo -N -l >&2 || true
exit 1
