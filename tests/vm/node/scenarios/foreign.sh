#!/bin/bash
# A new instance whose second instance-store disk carries a filesystem someone else made (ext4 with
# a file): nodeprep-boot refuses, names the disk and what is on it, formats nothing; containerd
# still starts (Before= orders, it does not require); serve and /readyz name the refusal.
. /vmtest/lib.sh
. /vmtest/node-lib.sh
show_units
b=nodeprep-boot.service
ujournal $b | sed 's/^/  [journal -u] /' | tail -n 30
foreign=$(dev_of_serial "$(tr ' ' '\n' </proc/cmdline | sed -n 's/^vmtest\.foreign=//p')")
info "the foreign disk is /dev/$foreign"
check "nodeprep-boot.service failed with exit 1 (refused)" bash -c "[[ \$(systemctl show -p Result --value $b) == exit-code && \$(systemctl show -p ExecMainStatus --value $b) == 1 ]]"
check "boot's journal names /dev/$foreign and ext4" bash -c "journalctl -b -o cat -u $b | grep 'refused' | grep -q '/dev/$foreign' && journalctl -b -o cat -u $b | grep 'refused' | grep -q ext4"
check "no array" not md_any
check "nothing mounted at /mnt/nodeprep" not is_mounted /mnt/nodeprep
check "no mkfs, no mdadm --create" bash -c "! journalctl -b -o cat -u $b | grep -qE 'mkfs|mdadm --create'"
for d in $(store_disks); do
  [[ $d == "$foreign" ]] && continue
  check "$d is still all zeros" store_is_zero "$d"
done
check "containerd started anyway" bash -c "[[ \$(systemctl show -p ActiveState --value containerd.service) == active ]]"
code=$(http_code http://127.0.0.1:9477/readyz)
info "/readyz $code: $(head -c 400 /tmp/http.body)"
check "/readyz is 503" bash -c "[[ $code == 503 ]]"
nodeprep --output json status >/tmp/status.json 2>/dev/null || true
jq -r '.checks[] | select(.name == "storage") | .summary' /tmp/status.json | sed 's/^/  [storage] /'
check_json "the storage check names the refusal, the disk and ext4" /tmp/status.json \
  ".checks[] | select(.name == \"storage\") | (.status == \"fail\") and (.summary | test(\"/dev/$foreign\")) and (.summary | test(\"ext4\"))"
check_json "and calls it no hardware fault" /tmp/status.json '.checks[] | select(.name == "storage") | (.hardware_fault // null) == null'
timings
finish
