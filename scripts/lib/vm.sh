# Functions that drive a QEMU virtual machine from a test script; source this file.
#
# Each VM lives in a run directory DIR of its own:
#   DIR/serial.log   the guest's serial console (ttyS0), scanned for markers
#   DIR/qmp.sock     QEMU's QMP socket (power cut, status)
#   DIR/qemu.pid     QEMU's pid (-pidfile); every kill goes to that pid and no other
#   DIR/qemu.stderr  QEMU's own messages
# vm_start boots it (direct kernel boot), vm_wait_marker waits for a line on the console with
# a deadline, vm_qmp sends one QMP command, vm_power_cut pulls the plug, vm_wait_exit waits for
# QEMU to end, vm_kill ends it whatever its state (use it in an EXIT trap).
# Software emulation (-accel tcg) by default: KVM is present on these machines but its guests
# hang (docs/vm.md); VM_ACCEL=kvm tries it elsewhere.

# Prints a message on stderr.
vm_log() { printf 'vm: %s\n' "$*" >&2; }

# Starts QEMU in the background; returns once its pid is known.
# Usage: vm_start DIR KERNEL INITRD CMDLINE DISK [QEMU-ARGUMENT ...]
# DISK is a qcow2 file (a throwaway overlay of the image under test) or a raw image (which the
# host can read between boots, see vm_read_entry); the extra arguments are
# passed to QEMU (for instance a network with hostfwd, or a second disk): there is no other
# device (-nodefaults: no network, CD-ROM or display unless given). The VM does not
# reboot (-no-reboot): a reboot or a panic with panic=N ends QEMU, and the test starts it again.
vm_start() {
    local dir=$1 kernel=$2 initrd=$3 cmdline=$4 disk=$5 format=raw
    shift 5
    case $disk in *.qcow2) format=qcow2 ;; esac
    mkdir -p "$dir"
    rm -f "$dir/serial.log" "$dir/qmp.sock" "$dir/qemu.pid" "$dir/qemu.stderr"
    : > "$dir/serial.log"
    qemu-system-x86_64 \
        -accel "${VM_ACCEL:-tcg}" -smp "${VM_CPUS:-2}" -m "${VM_MEMORY:-1024}" \
        -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
        -drive "file=$disk,format=$format,if=virtio,cache=unsafe" \
        -nodefaults -display none -monitor none -serial "file:$dir/serial.log" \
        -qmp "unix:$dir/qmp.sock,server=on,wait=off" \
        -pidfile "$dir/qemu.pid" -no-reboot \
        "$@" </dev/null 2>"$dir/qemu.stderr" &
    echo $! > "$dir/qemu.pid.launch"
    # QEMU writes its pidfile before it runs the guest; until then, its launch pid is the same.
    local deadline=$((SECONDS + 30))
    until [ -s "$dir/qemu.pid" ] && [ -S "$dir/qmp.sock" ]; do
        # (Not vm_running: until the fork has exec'd QEMU, the process's command line is the shell's.)
        if ! kill -0 "$(cat "$dir/qemu.pid.launch")" 2>/dev/null; then
            vm_log "QEMU did not start: $(tail -n 3 "$dir/qemu.stderr")"
            return 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            vm_log "QEMU wrote no pidfile and no QMP socket within 30 s"
            return 1
        fi
        sleep 0.1
    done
}

# Prints the pid of the VM's QEMU (from its pidfile, else from its launch).
vm_pid() {
    local dir=$1
    if [ -s "$dir/qemu.pid" ]; then cat "$dir/qemu.pid"; else cat "$dir/qemu.pid.launch" 2>/dev/null; fi
}

# Succeeds while the VM's QEMU process runs (a zombie counts as ended).
vm_running() {
    local pid state
    pid=$(vm_pid "$1") || return 1
    [ -n "$pid" ] || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && grep -qa -- "$1/qmp.sock" "/proc/$pid/cmdline" 2>/dev/null
}

# Waits until the serial console shows MARKER (a fixed string), polling the log.
# Usage: vm_wait_marker DIR MARKER TIMEOUT-SECONDS
# Returns 0 when seen, 1 at the deadline, 2 when QEMU ended without it.
vm_wait_marker() {
    local dir=$1 marker=$2 deadline=$((SECONDS + $3))
    while ! grep -qaF -- "$marker" "$dir/serial.log"; do
        if ! vm_running "$dir"; then
            grep -qaF -- "$marker" "$dir/serial.log" && return 0
            vm_log "QEMU ended before \"$marker\" appeared (console: $dir/serial.log)"
            return 2
        fi
        if [ $SECONDS -ge "$deadline" ]; then
            vm_log "no \"$marker\" on the console within $3 s (console: $dir/serial.log)"
            return 1
        fi
        sleep 0.2
    done
}

# Sends one QMP command (a JSON object) and prints QEMU's reply; fails on an error reply.
# Usage: vm_qmp DIR '{"execute": "query-status"}'
vm_qmp() {
    timeout 20 python3 - "$1/qmp.sock" "$2" <<'EOF'
import json, socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(15)
sock.connect(sys.argv[1])
stream = sock.makefile("rw")
def reply():
    while True:
        line = stream.readline()
        if not line:
            return {"return": {}, "closed": True}   # `quit` may close before it answers
        message = json.loads(line)
        if "return" in message or "error" in message:
            return message
json.loads(stream.readline())                        # the greeting
stream.write('{"execute": "qmp_capabilities"}\n'); stream.flush()
reply()
stream.write(sys.argv[2] + "\n"); stream.flush()
answer = reply()
print(json.dumps(answer))
sys.exit(1 if "error" in answer else 0)
EOF
}

# Pulls the plug: QEMU stops at once, as a machine whose power is cut (the guest writes nothing more).
vm_power_cut() {
    vm_qmp "$1" '{"execute": "quit"}' >/dev/null
}

# Waits until the VM's QEMU has ended. Usage: vm_wait_exit DIR TIMEOUT-SECONDS
vm_wait_exit() {
    local dir=$1 deadline=$((SECONDS + $2))
    while vm_running "$dir"; do
        if [ $SECONDS -ge "$deadline" ]; then
            vm_log "QEMU (pid $(vm_pid "$dir")) still runs after $2 s"
            return 1
        fi
        sleep 0.1
    done
}

# Ends the VM's QEMU if it still runs, by its own pid; for EXIT traps.
vm_kill() {
    local dir=$1 pid
    vm_running "$dir" || return 0
    pid=$(vm_pid "$dir")
    kill -KILL "$pid" 2>/dev/null || true
    vm_wait_exit "$dir" 10 || true
}

# Prints the kernel (vmlinuz-*) of a tree's /boot; there must be exactly one.
vm_tree_kernel() { vm_one "$1"/boot/vmlinuz-*; }

# Prints the initramfs (initrd.img-*) of a tree's /boot; there must be exactly one.
vm_tree_initrd() { vm_one "$1"/boot/initrd.img-*; }

# Prints its only argument, which must name a file; fails otherwise.
vm_one() {
    if [ $# -ne 1 ] || [ ! -f "$1" ]; then
        vm_log "expected one file, found: $*"
        return 1
    fi
    echo "$1"
}

# Reads a file of an ext4 disk image without mounting it (debugfs -c: as a boot loader reads it,
# without the journal, and without the allocation bitmaps, whose checksums a power cut may
# leave stale); prints it.
# Usage: vm_disk_cat DISK PATH
vm_disk_cat() {
    local out
    out=$(debugfs -c -R "cat $2" "$1" 2>/dev/null) || return 1
    [ -n "$out" ] || { vm_log "$1 has no $2 (or it is empty)"; return 1; }
    printf '%s\n' "$out"
}

# Acts as the boot loader of a sysroot disk: reads its default Boot Loader Specification entry
# (loader/loader.conf, loader/entries/*.conf), copies that entry's kernel and initramfs out of
# the disk into DIR/vmlinuz and DIR/initrd.img, and sets VM_ENTRY to the entry's file name and
# VM_ENTRY_OPTIONS to its command line.
# Usage: vm_read_entry DIR DISK (a raw ext4 image)
vm_read_entry() {
    local dir=$1 disk=$2 entry conf linux initrd
    entry=$(vm_disk_cat "$disk" /loader/loader.conf | awk '$1 == "default" { print $2 }' | tail -n 1)
    [ -n "$entry" ] || { vm_log "$disk: loader/loader.conf names no default entry"; return 1; }
    conf=$(vm_disk_cat "$disk" "/loader/entries/$entry") || return 1
    linux=$(printf '%s\n' "$conf" | awk '$1 == "linux" { print $2 }')
    initrd=$(printf '%s\n' "$conf" | awk '$1 == "initrd" { print $2 }')
    VM_ENTRY_OPTIONS=$(printf '%s\n' "$conf" | sed -n 's/^options[[:space:]]\{1,\}//p')
    rm -f "$dir/vmlinuz" "$dir/initrd.img"
    debugfs -c -R "dump $linux $dir/vmlinuz" "$disk" 2>/dev/null
    debugfs -c -R "dump $initrd $dir/initrd.img" "$disk" 2>/dev/null
    [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ] || { vm_log "$disk: entry $entry: no $linux or $initrd"; return 1; }
    VM_ENTRY=$entry
}

# Acts as the boot loader of a plain root disk (a machine that moves its root in place): copies
# the kernel and initramfs of the disk's /boot (exactly one of each, read with debugfs -c as
# vm_disk_cat does) into DIR/vmlinuz and DIR/initrd.img, and sets VM_ENTRY to the kernel's name.
# Usage: vm_read_root_boot DIR DISK (a raw ext4 image)
vm_read_root_boot() {
    local dir=$1 disk=$2 names kernel initrd
    names=$(debugfs -c -R "ls -p /boot" "$disk" 2>/dev/null | awk -F/ '$3 ~ /^100/ { print $6 }')
    kernel=$(printf '%s\n' "$names" | grep '^vmlinuz-' || true)
    initrd=$(printf '%s\n' "$names" | grep '^initrd\.img-' || true)
    if [ "$(printf '%s\n' "$kernel" | grep -c .)" -ne 1 ] || [ "$(printf '%s\n' "$initrd" | grep -c .)" -ne 1 ]; then
        vm_log "$disk: /boot holds no single kernel and initramfs: $(echo $names)"
        return 1
    fi
    rm -f "$dir/vmlinuz" "$dir/initrd.img"
    debugfs -c -R "dump /boot/$kernel $dir/vmlinuz" "$disk" 2>/dev/null
    debugfs -c -R "dump /boot/$initrd $dir/initrd.img" "$disk" 2>/dev/null
    [ -s "$dir/vmlinuz" ] && [ -s "$dir/initrd.img" ] || { vm_log "$disk: cannot read /boot/$kernel or /boot/$initrd"; return 1; }
    VM_ENTRY=$kernel
}
