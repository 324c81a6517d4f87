#!/bin/sh
# userData of the `late` scenario, as an EC2NodeClass would carry it (a shell script part: run by
# cloud-init in cloud-final). To be sure of the race issue 22 describes (boot ran ~2 s before
# cloud-final wrote the config), it first waits for nodeprep-boot.service to have finished.
i=0
until systemctl is-active -q nodeprep-boot.service || [ $i -ge 600 ]; do sleep 0.2; i=$((i + 1)); done
echo "vmtest userData: nodeprep-boot.service is $(systemctl is-active nodeprep-boot.service); writing /etc/nodeprep/config.toml"
cat >/etc/nodeprep/config.toml <<'TOML'
# from userData
[limits]
apply = "always"
memlock = "unlimited"
stack = 67108864
[serve]
listen = "127.0.0.1:9478"
TOML
