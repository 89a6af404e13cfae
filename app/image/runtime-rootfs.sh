#!/bin/sh
# runtime-rootfs.sh DEST: copy into DEST the root filesystem the virtualenv /opt/venv needs
# to run, and nothing else: its interpreter and standard library (without the modules
# for developing Python itself), every shared library any of them loads (the ldd
# closure), /bin/sh, CA certificates, time zones, users and dpkg's package list.
# Runs inside the app image's build (app/Dockerfile) on a Debian-based Python image
# (python:3.11-slim-bookworm or Debian's own python3).
set -eu

dest=${1:?usage: runtime-rootfs.sh DEST}
venv=/opt/venv
stdlib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$dest"

# copy PATH...: each path with its parent directories, and for a symlink every link of
# its chain. Parents are resolved first, so merged-/usr links (/lib -> usr/lib) stay
# links in DEST.
copy() {
  for path in "$@"; do
    [ -e "$path" ] || continue
    real_dir=$(readlink -f "$(dirname "$path")")
    cp -a --parents "$real_dir/$(basename "$path")" "$dest"
    if [ -L "$path" ]; then
      target=$(readlink "$path")
      case $target in
        /*) copy "$target" ;;
        *) copy "$real_dir/$target" ;;
      esac
    fi
  done
  return 0
}

# The top-level merged-/usr links themselves (they are links on bookworm).
for link in /bin /sbin /lib /lib64; do
  [ -L "$link" ] && cp -a "$link" "$dest/"
done

copy "$venv/bin/python" /bin/sh /etc/ld.so.cache /etc/ld.so.conf \
  /etc/passwd /etc/group /etc/nsswitch.conf /etc/mime.types /etc/os-release \
  /usr/lib/os-release /etc/debian_version /etc/localtime /etc/timezone /var/lib/dpkg/status
for dir in /etc/ld.so.conf.d /etc/ssl /usr/lib/ssl /usr/share/ca-certificates \
           /usr/share/zoneinfo "/etc/python3.11"; do
  [ -d "$dir" ] && cp -a --parents "$dir" "$dest"
done

# The standard library without what only develops, packages or tests Python, and
# without the base's own site-packages (pip, setuptools: the venv has its own).
tar -C / -cf - \
  --exclude="${stdlib#/}/ensurepip" --exclude="${stdlib#/}/idlelib" \
  --exclude="${stdlib#/}/lib2to3" --exclude="${stdlib#/}/pydoc_data" \
  --exclude="${stdlib#/}/tkinter" --exclude="${stdlib#/}/turtledemo" \
  --exclude="${stdlib#/}/test" --exclude="${stdlib#/}/unittest/test" \
  --exclude="${stdlib#/}/site-packages" --exclude="${stdlib#/}/dist-packages" \
  "${stdlib#/}" | tar -C "$dest" -xf -
cp -a --parents "$venv" "$dest"

# Every shared library reached from an ELF file in DEST, until nothing new appears.
# libgcc_s is added by name: glibc loads it with dlopen (thread cancellation), unseen by ldd.
gcc_s=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" { print $NF; exit }')
copy ${gcc_s:+"$gcc_s"}
seen=""
while :; do
  libs=$(find "$dest" -type f \( -name '*.so*' -o -perm -u+x \) -exec sh -c '
    for f; do head -c 4 "$f" | grep -q ELF && ldd "$f" 2>/dev/null; done' sh {} + |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
    grep -v "^$dest/" | sort -u)
  [ "$libs" = "$seen" ] && break
  seen=$libs
  # shellcheck disable=SC2086 # one library path per word
  copy $libs
done
if find "$dest" -type f -name '*.so*' -exec ldd {} + 2>/dev/null | grep 'not found'; then
  echo "runtime-rootfs.sh: a shared library above is missing from the base image" >&2
  exit 1
fi
mkdir -p "$dest/tmp" "$dest/proc" "$dest/sys" "$dest/dev"
chmod 1777 "$dest/tmp"
