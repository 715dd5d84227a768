#!/bin/sh
# A journaled ext4 file system on a loop device, for the benchmarks' file-creating parts.
#
#     benchmarks/node-disk.sh DIR          # make (once) and mount it at DIR (root only)
#     benchmarks/node-disk.sh -u DIR       # unmount it and delete its image
#
# Why: a node's disk is usually ext4 with its journal (mkfs.ext4's default). The root file system
# of the VM these benchmarks were written on is ext4 *without* a journal, and there ext4 skips
# every inode deleted in the last 5 s (in the last 5 min while the inode table block is dirty)
# when it picks an inode for a new file (fs/ext4/ialloc.c, recently_deleted()). A benchmark that
# makes and deletes thousands of files per round then pays, in every later round, for its own
# earlier deletions. On a journaled ext4 that check is off. The image lives on the same disk as
# the root file system, so the device is the same; only the file system's mode differs.
#
# Then, e.g.:  .venv/bin/python benchmarks/bench_engine.py --dir DIR
#              TMPDIR=DIR .venv/bin/python benchmarks/bench_run.py 200 6 --pyc
set -eu
if [ "${1:-}" = "-u" ]; then
    dir=$2
    img=$(findmnt -n -o SOURCE --target "$dir" | xargs -r losetup -n -O BACK-FILE 2>/dev/null || true)
    umount "$dir"
    [ -n "$img" ] && rm -f "$img"
    exit 0
fi
dir=${1:?usage: node-disk.sh [-u] DIR}
img=${NODE_DISK_IMAGE:-/var/tmp/rawexec-node-disk.img}
mkdir -p "$dir"
if mountpoint -q "$dir"; then
    echo "$dir is mounted already" >&2
    exit 0
fi
[ -e "$img" ] || { truncate -s "${NODE_DISK_SIZE:-4G}" "$img" && mkfs.ext4 -q -F "$img"; }
mount -o loop "$img" "$dir"
echo "$dir: ext4 with a journal on $(findmnt -n -o SOURCE --target "$dir"), image $img"
