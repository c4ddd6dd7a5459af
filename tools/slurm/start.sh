#!/usr/bin/env bash
# Starts a one-node Slurm on localhost (munged, slurmctld, slurmd) from Debian's slurm-wlm and
# munge packages, with tools/slurm/slurm.conf, and waits until the node takes jobs. Run as root on
# a throwaway machine (CI): it writes /etc/slurm/slurm.conf. Idempotent: daemons already running
# are left alone.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cpus=$(nproc)
mkdir -p /etc/slurm /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd
sed "s/^NodeName=localhost \(.*\)CPUs=[0-9]*/NodeName=localhost \1CPUs=${cpus}/" \
  "$here/slurm.conf" >/etc/slurm/slurm.conf

# munge: the package made a key at install; make one if it did not.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 600 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
fi

# (pid files, not pgrep: minimal images lack procps)
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
alive /run/slurmctld.pid || /usr/sbin/slurmctld
alive /run/slurmd.pid || /usr/sbin/slurmd -N localhost

for _ in $(seq 60); do
  state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
  case "$state" in
    idle* | mixed* | allocated*) echo "slurm: node localhost is $state ($cpus CPUs)"; exit 0 ;;
  esac
  sleep 0.5
done
echo "slurm: the node did not come up (state: ${state:-none}); see /var/log/slurm/" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
