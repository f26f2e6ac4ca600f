# Functions that drive a QEMU virtual machine from a test script; source this file.
#
# Each VM lives in a run directory DIR of its own:
#   DIR/serial.log   the guest's serial console (ttyS0), scanned for markers
#   DIR/qmp.sock     QEMU's QMP socket (power cut, status)
#   DIR/qemu.pid     QEMU's pid (-pidfile); every kill goes to that pid and no other
#   DIR/qemu.stderr  QEMU's own messages
# vm_start boots it (direct kernel boot) or vm_start_uefi (its own boot loader), vm_wait_marker waits for a line on the console with
# a deadline, vm_qmp sends one QMP command, vm_power_cut pulls the plug, vm_wait_exit waits for
# QEMU to end, vm_kill ends it whatever its state (use it in an EXIT trap).
# Software emulation (-accel tcg) by default: KVM is present on these machines but its guests
# hang (docs/vm.md); VM_ACCEL=kvm tries it elsewhere.

# Prints a message on stderr.
vm_log() { printf 'vm: %s\n' "$*" >&2; }

# Starts QEMU in the background by direct kernel boot; returns once its pid is known.
# Usage: vm_start DIR KERNEL INITRD CMDLINE DISK [QEMU-ARGUMENT ...]
# DISK is a qcow2 file (a throwaway overlay of the image under test) or a raw image (which the
# host can read between boots, see vm_read_root_boot); the extra arguments are
# passed to QEMU (for instance a network with hostfwd, or a second disk): there is no other
# device (-nodefaults: no network, CD-ROM or display unless given). The VM does not
# reboot (-no-reboot): a reboot or a panic with panic=N ends QEMU, and the test starts it again.
vm_start() {
    local dir=$1 kernel=$2 initrd=$3 cmdline=$4 disk=$5
    shift 5
    vm_launch "$dir" -kernel "$kernel" -initrd "$initrd" -append "$cmdline" -drive "$(vm_drive "$disk"),if=virtio" "$@"
}

# Starts QEMU in the background on UEFI firmware (OVMF), which boots the EFI system partition
# of ESP-DISK: the machine's own boot loader chooses what runs. DISK and ESP-DISK are virtio
# disks, ESP-DISK the first boot device (the guest names it /dev/vda: find the root by its
# label). DIR/efivars.fd holds the machine's EFI variables, made from OVMF's template at its
# first boot and kept across its boots.
# Usage: vm_start_uefi DIR DISK ESP-DISK [QEMU-ARGUMENT ...]
vm_start_uefi() {
    local dir=$1 disk=$2 esp=$3
    shift 3
    mkdir -p "$dir"
    [ -f "$dir/efivars.fd" ] || cp /usr/share/OVMF/OVMF_VARS_4M.fd "$dir/efivars.fd"
    vm_launch "$dir" \
        -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
        -drive "if=pflash,format=raw,unit=1,file=$dir/efivars.fd" \
        -drive "$(vm_drive "$disk"),if=virtio" \
        -drive "$(vm_drive "$esp"),if=none,id=esp" -device virtio-blk-pci,drive=esp,bootindex=0 "$@"
}

# A -drive's file, format (qcow2 or raw, by the name) and cache settings.
vm_drive() {
    local format=raw
    case $1 in *.qcow2) format=qcow2 ;; esac
    echo "file=$1,format=$format,cache=unsafe"
}

# Runs QEMU with the settings every VM shares and the given arguments; returns once its pid is known.
vm_launch() {
    local dir=$1
    shift
    mkdir -p "$dir"
    rm -f "$dir/serial.log" "$dir/qmp.sock" "$dir/qemu.pid" "$dir/qemu.stderr"
    : > "$dir/serial.log"
    qemu-system-x86_64 \
        -accel "${VM_ACCEL:-tcg}" -smp "${VM_CPUS:-2}" -m "${VM_MEMORY:-1024}" \
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
    local pid
    pid=$(cat "$dir/qemu.pid" 2>/dev/null)   # QEMU removes its pidfile as it ends
    [ -n "$pid" ] || pid=$(cat "$dir/qemu.pid.launch" 2>/dev/null)
    echo "$pid"
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

# Reads what systemd-boot will boot from a GPT disk whose first partition, at 1 MiB, is the EFI
# system partition: sets VM_ENTRY to the default entry its loader/loader.conf names (read with
# mtools, no mount) and VM_ENTRY_OPTIONS to that entry's command line.
# Usage: vm_read_esp_entry DISK (a raw image)
vm_read_esp_entry() {
    local esp="$1@@1M" entry conf
    entry=$(mtype -i "$esp" ::/loader/loader.conf 2>/dev/null | tr -d '\r' | awk '$1 == "default" { print $2 }' | tail -n 1)
    [ -n "$entry" ] || { vm_log "$1: the ESP's loader/loader.conf names no default entry"; return 1; }
    conf=$(mtype -i "$esp" "::/loader/entries/$entry" 2>/dev/null | tr -d '\r') || { vm_log "$1: the ESP has no entry $entry"; return 1; }
    VM_ENTRY_OPTIONS=$(printf '%s\n' "$conf" | sed -n 's/^options[[:space:]]\{1,\}//p')
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
