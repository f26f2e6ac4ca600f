# The boot integration's files and where they go, in one place: scripts/install and scripts/vm-image source it.

# Installs the boot integration (docs/operations.md, Booting staged deployments) under ROOT:
# the boot counter in SHARE (/usr/share/updatinator unless the prefix is another), and the
# initramfs-tools hook, which copies it from there, and local-bottom script in /etc.
# Usage: install_boot_integration_files ROOT SHARE
install_boot_integration_files() {
    local root=$1 share=$2
    install -D -m 0755 contrib/initramfs-tools/updatinator-boot "$root$share/updatinator-boot"
    install -D -m 0755 /dev/stdin "$root/etc/initramfs-tools/hooks/updatinator" \
        < <(sed "s|/usr/share/updatinator/updatinator-boot|$share/updatinator-boot|" contrib/initramfs-tools/hooks/updatinator)
    install -D -m 0755 contrib/initramfs-tools/scripts/local-bottom/updatinator \
        "$root/etc/initramfs-tools/scripts/local-bottom/updatinator"
}
