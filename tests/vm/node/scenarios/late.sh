#!/bin/bash
# A new instance whose userData (a shell script, run in cloud-final) writes /etc/nodeprep/config.toml
# after nodeprep-boot has run, as on a real first boot: its config must take effect. It asks for
# stack = 64 MiB and serve on port 9478 (the AMI's config: unlimited, 9477).
. /vmtest/lib.sh
. /vmtest/node-lib.sh
show_units
b=nodeprep-boot.service r=nodeprep-reconfigure.service
journalctl -b -o cat -u cloud-final.service | sed 's/^/  [cloud-final] /' | tail -n 10
ujournal $r | sed 's/^/  [journal -u reconfigure] /' | tail -n 30
check "userData wrote the config after nodeprep-boot had finished" bash -c "journalctl -b -o cat -u cloud-final.service | grep -q 'vmtest userData: nodeprep-boot.service is active; writing /etc/nodeprep/config.toml'"
check "the file holds userData's config" grep -q 'stack = 67108864' /etc/nodeprep/config.toml
check "nodeprep-reconfigure.service ran after boot" before $b ActiveEnterTimestampMonotonic $r ExecMainStartTimestampMonotonic
check "and succeeded" bash -c "[[ \$(systemctl show -p Result --value $r) == success ]]"
check "it applied the changed config" bash -c "journalctl -b -o cat -u $r | grep -q 'the configuration changed since the last boot applied it'"
check "before containerd started" before $r InactiveEnterTimestampMonotonic containerd.service ExecMainStartTimestampMonotonic
c=$(main_pid containerd.service)
info "containerd pid $c: stack $(limit_of "$c" 'Max stack size')"
check "containerd runs with userData's stack (64 MiB)" bash -c "[[ '$(limit_of "$c" 'Max stack size')' == '67108864 67108864' ]]"
canary /tmp/canary.json
check_json "the canary pod has userData's stack" /tmp/canary.json '.checks[0].found.pod.stack.soft == 67108864'
code=$(http_code http://127.0.0.1:9478/readyz)
info "/readyz on 9478: $code"
check "serve listens where userData said (9478)" bash -c "[[ $code == 200 || $code == 503 ]]"
check "and no longer on 9477" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://127.0.0.1:9477/livez) == 000 ]]"
# A second write with the same values (comments differ) changes nothing.
sed -i '1i # touched again' /etc/nodeprep/config.toml
for _ in $(seq 1 100); do
  journalctl -b -o cat -u $r | grep -q 'the configuration is the one the last boot applied' && break
  sleep 0.3
done
check "a rewrite with the same values reruns nothing" bash -c "journalctl -b -o cat -u $r | grep -q 'the configuration is the one the last boot applied'"
timings
# A broken config: the reconfigure fails naming the file and key, nothing is changed; serve,
# restarted to read it, exits 2 and stays down instead of restarting every 5 s
# (RestartPreventExitStatus=2).
s=nodeprep.service
printf '[serve]\ninterval_seconds = "often"\n' >/etc/nodeprep/config.toml
for _ in $(seq 1 100); do
  [[ $(prop $s ActiveState) == failed ]] && break
  sleep 0.3
done
restarts=$(prop $s NRestarts)
sleep 12
info "serve: $(prop $s ActiveState) $(prop $s Result) exit $(prop $s ExecMainStatus), NRestarts $restarts then $(prop $s NRestarts)"
check "serve stopped on the config error (exit 2) and stays down" bash -c "[[ \$(systemctl show -p ActiveState --value $s) == failed && \$(systemctl show -p ExecMainStatus --value $s) == 2 && \$(systemctl show -p NRestarts --value $s) == $restarts ]]"
check "the reconfigure's journal names the file and the key" bash -c "journalctl -b -o cat -u $r | grep 'config.toml' | grep -q 'interval_seconds'"
# Fixed: serve comes back by itself.
printf '[limits]\napply = "always"\nstack = 67108864\n[serve]\nlisten = "127.0.0.1:9478"\ninterval_seconds = 20\n' >/etc/nodeprep/config.toml
for _ in $(seq 1 100); do
  [[ $(prop $s ActiveState) == active ]] && break
  sleep 0.3
done
check "a fixed config starts serve again" bash -c "[[ \$(systemctl show -p ActiveState --value $s) == active ]]"
finish
