#!/usr/bin/env bash
# horovod_run.sh: run a modelzoo command (or any program) on N processes with horovodrun.
#
# A thin wrapper: it works out the hosts and their slots (from -H, a hostfile, or a SLURM or
# PBS allocation), defaults -np to all of those slots, and hands everything to horovodrun.
# Run it with --help for the options; docs/scaling_out.md has the whole story.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./horovod_run.sh [OPTIONS] [--] COMMAND [ARGS...]

Runs COMMAND on N processes with horovodrun (Gloo controller by default). A modelzoo
subcommand (train, evaluate, list, info, data) as COMMAND runs `python -m modelzoo.cli ...`.

Where the processes go (the first that applies):
  -H, --hosts LIST       host1:slots,host2:slots (a host without ":slots" gets --slots-per-host)
  --hostfile FILE        one host per line: "host", "host:slots" or "host slots=N"; # comments
  a SLURM allocation     SLURM_JOB_NODELIST, slots from SLURM_NTASKS_PER_NODE/SLURM_TASKS_PER_NODE
  a PBS/Torque job       PBS_NODEFILE (a host appears once per slot)
  otherwise              this machine: one slot per GPU, or -np slots on a CPU-only machine

Options:
  -np, -n, --np N        number of processes (default: every slot of the hosts)
  --slots-per-host K     slots of a host given without a count (default: GPUs here, else 1)
  --gloo | --mpi         controller (default --gloo; --mpi needs Horovod built with MPI)
  --dry-run              print the horovodrun command instead of running it
  -h, --help             show this help
Any other option goes to horovodrun unchanged, e.g. --start-timeout 120,
--network-interface ib0, --output-filename logs/, -p 2222 (ssh port); when such an option
takes a value, end the options with `--`.

Environment:
  HOROVODRUN   the launcher (default: horovodrun on PATH, else .venv/bin/horovodrun here)
  PYTHON       interpreter for modelzoo subcommands (default: the one beside HOROVODRUN)

Examples:
  ./horovod_run.sh -np 2 train lhc_cnn --data events.h5             # 2 processes here
  ./horovod_run.sh -H n1:4,n2:4 train lhc_cnn --data events.h5      # 8 processes, 2 nodes
  ./horovod_run.sh --hostfile hosts.txt -- modelzoo train lhc_cnn --data events.h5
  sbatch -N 4 --ntasks-per-node=4 --wrap "./horovod_run.sh train lhc_cnn --data events.h5"
EOF
}

die() {
  echo "horovod_run.sh: $*" >&2
  echo "Try './horovod_run.sh --help'." >&2
  exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOROVODRUN=${HOROVODRUN:-$(command -v horovodrun || echo "$here/.venv/bin/horovodrun")}

np="" hosts="" hostfile="" slots_per_host="" controller="--gloo" dry_run=0
passthrough=()
has_separator=0
for arg in "$@"; do
  if [[ $arg == -- ]]; then has_separator=1; break; fi
done

need_value() {  # option, value
  [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "option $1 needs a value"
}

while (($#)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    -np | -n | --np | --num-proc) need_value "$@"; np=$2; shift 2 ;;
    -H | --hosts) need_value "$@"; hosts=$2; shift 2 ;;
    --hostfile) need_value "$@"; hostfile=$2; shift 2 ;;
    --slots-per-host) need_value "$@"; slots_per_host=$2; shift 2 ;;
    --gloo | --mpi) controller=$1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -*) passthrough+=("$1"); shift ;;
    *)
      # Without `--` the first word that is not an option starts the command.
      if ((has_separator)); then passthrough+=("$1"); shift; else break; fi ;;
  esac
done
(($#)) || die "no command given"
command=("$@")
[[ -z $np || $np =~ ^[1-9][0-9]*$ ]] || die "-np must be a positive integer, got '$np'"
[[ -z $slots_per_host || $slots_per_host =~ ^[1-9][0-9]*$ ]] \
  || die "--slots-per-host must be a positive integer, got '$slots_per_host'"

local_gpus() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true
  else
    echo 0
  fi
}

default_slots() {  # slots of a host given without a count
  if [[ -n $slots_per_host ]]; then echo "$slots_per_host"; return; fi
  local gpus
  gpus=$(local_gpus)
  if ((gpus > 0)); then echo "$gpus"; else echo 1; fi
}

with_slots() {  # comma list "a,b:2" -> "a:K,b:2"
  local out="" h k
  k=$(default_slots)
  IFS=, read -ra list <<<"$1"
  for h in "${list[@]}"; do
    [[ -z $h ]] && continue
    [[ $h == *:* ]] || h="$h:$k"
    out+="${out:+,}$h"
  done
  echo "$out"
}

hosts_from_hostfile() {  # "host", "host:N" or "host slots=N" per line
  [[ -r $1 ]] || die "cannot read hostfile $1"
  local line host slots out="" k
  k=$(default_slots)
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    read -r host rest <<<"$line" || true
    [[ -z ${host:-} ]] && continue
    if [[ $host == *:* ]]; then
      out+="${out:+,}$host"
      continue
    fi
    slots=$k
    if [[ ${rest:-} =~ slots=([0-9]+) ]]; then slots=${BASH_REMATCH[1]}; fi
    out+="${out:+,}$host:$slots"
  done <"$1"
  [[ -n $out ]] || die "hostfile $1 lists no hosts"
  echo "$out"
}

slurm_hostnames() {  # expand a SLURM node list such as nid[001-003,007],login1
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$1"
    return
  fi
  "${PYTHON:-python3}" - "$1" <<'PY'
import re, sys
text = sys.argv[1]
for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", text):
    m = re.fullmatch(r"(.*)\[(.*)\]", item)
    if not m:
        print(item)
        continue
    prefix, ranges = m.groups()
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        for i in range(int(lo), int(hi or lo) + 1):
            print(f"{prefix}{i:0{len(lo)}d}")
PY
}

slurm_slots() {  # one slot count per node, in node order
  local nodes=$1 spec count reps
  if [[ -n ${SLURM_NTASKS_PER_NODE:-} ]]; then
    for ((i = 0; i < nodes; i++)); do echo "${SLURM_NTASKS_PER_NODE%%(*}"; done
  elif [[ -n ${SLURM_TASKS_PER_NODE:-} ]]; then
    IFS=, read -ra specs <<<"$SLURM_TASKS_PER_NODE"   # e.g. 4(x2),2
    for spec in "${specs[@]}"; do
      count=${spec%%(*}
      reps=1
      if [[ $spec =~ \(x([0-9]+)\) ]]; then reps=${BASH_REMATCH[1]}; fi
      for ((i = 0; i < reps; i++)); do echo "$count"; done
    done
  else
    for ((i = 0; i < nodes; i++)); do default_slots; done
  fi
}

hosts_from_slurm() {
  local names slots out="" i
  mapfile -t names < <(slurm_hostnames "${SLURM_JOB_NODELIST:-$SLURM_NODELIST}")
  mapfile -t slots < <(slurm_slots "${#names[@]}")
  for i in "${!names[@]}"; do
    out+="${out:+,}${names[$i]}:${slots[$i]:-${slots[-1]}}"
  done
  echo "$out"
}

hosts_from_pbs() {  # PBS_NODEFILE repeats a host once per slot; keep first-seen order
  awk 'NF { if (!($1 in n)) order[k++] = $1; n[$1]++ }
       END { for (i = 0; i < k; i++) printf "%s%s:%d", (i ? "," : ""), order[i], n[order[i]] }' \
    "$PBS_NODEFILE"
}

if [[ -n $hosts ]]; then
  hosts=$(with_slots "$hosts")
elif [[ -n $hostfile ]]; then
  hosts=$(hosts_from_hostfile "$hostfile")
elif [[ -n ${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}} ]]; then
  hosts=$(hosts_from_slurm)
elif [[ -n ${PBS_NODEFILE:-} && -r ${PBS_NODEFILE:-} ]]; then
  hosts=$(hosts_from_pbs)
else
  # This machine only: as many slots as processes asked for, else one per GPU (or 1).
  hosts="localhost:${np:-$(default_slots)}"
fi

total=0
IFS=, read -ra entries <<<"$hosts"
for entry in "${entries[@]}"; do
  slots=${entry##*:}
  [[ $slots =~ ^[0-9]+$ ]] || die "bad host entry '$entry' (want host:slots)"
  total=$((total + slots))
done
np=${np:-$total}
((np <= total)) || die "-np $np is more than the $total slots of $hosts"

case ${command[0]} in
  train | evaluate | list | info | data)
    if [[ -z ${PYTHON:-} ]]; then
      PYTHON=$(dirname "$HOROVODRUN")/python
      [[ -x $PYTHON ]] || PYTHON=python3
    fi
    command=("$PYTHON" -m modelzoo.cli "${command[@]}")
    ;;
esac

launch=("$HOROVODRUN" "$controller" -np "$np" -H "$hosts"
        ${passthrough[@]+"${passthrough[@]}"} "${command[@]}")
if ((dry_run)); then
  printf '%q ' "${launch[@]}"
  echo
  exit 0
fi
[[ -x $HOROVODRUN ]] || command -v "$HOROVODRUN" >/dev/null 2>&1 \
  || die "horovodrun not found (install Horovod with 'make venv', or set HOROVODRUN)"
exec "${launch[@]}"
