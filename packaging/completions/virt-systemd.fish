# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_virt_systemd_global_optspecs
    string join \n c/connect= config= r/readonly h/help V/version
end

function __fish_virt_systemd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_virt_systemd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_virt_systemd_using_subcommand
    set -l cmd (__fish_virt_systemd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -s V -l version -d 'Print version'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "rewrite" -d 'Rewrite a domain XML file or stdin (no libvirt needed)'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "show" -d 'Show what virt-systemd manages in a domain XML, and any drift'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "enable" -d 'Wire a defined libvirt domain into systemd (rewrite its persistent definition)'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "disable" -d 'Remove everything virt-systemd manages from a defined libvirt domain'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "status" -d 'What each domain carries, and whether it is running, registered and ready'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "doctor" -d 'Check this host: hook, libvirt, machined, vsock, ssh proxy, configuration'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "hook-install" -d 'Install (or remove) the libvirt hook link qemu.d/50-virt-systemd'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "notify-listener" -d 'Receive guests\' readiness notifications over AF_VSOCK (the host service)'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "control-service" -d 'Serve machinectl\'s control socket for every running domain (the host service)'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "wait-ready" -d 'Wait until a domain\'s guest reports READY=1 (or SSH) in its current boot'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "ssh" -d 'SSH into a domain\'s guest over vsock'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "vsock-proxy" -d 'Connect stdin/stdout to a guest\'s vsock port (for ssh\'s ProxyCommand)'
complete -c virt-systemd -n "__fish_virt_systemd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -s o -l output -d 'Write the result to OUT instead of stdout' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l credential -d 'Text credential io.systemd.credential:NAME=VALUE (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l credential-file -d 'Binary credential from a file, base64 in io.systemd.credential.binary: (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l secret-credential -d 'Credential passed through fw_cfg from a host file; the value stays out of the XML and QEMU\'s argv (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l remove-credential -d 'Stop managing credential NAME and remove it (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l hostname -d 'Guest hostname (credential system.hostname)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l ssh-key -d 'SSH public key, or a file of them, for root (credential ssh.authorized_keys.root; repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l kernel-cmdline -d 'Extra kernel command line arguments (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l vhost-user-vsock -d 'Make the vsock device QEMU\'s vhost-user-vsock-pci, served by a user-space backend (vhost-device-vsock) at this vhost-user socket, for hosts or users without /dev/vhost-vsock' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l notify-port -d 'vsock port of the host\'s readiness listener [default: 8742]' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -s i -l in-place -d 'Replace FILE atomically, keeping its mode and owner'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l strip -d 'Remove everything virt-systemd manages'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l machine-id -d 'Give the guest the domain UUID as machine ID (credential system.machine_id)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l no-machine-id -d 'Stop passing the machine ID'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l vsock -d 'Add a virtio vsock device with an automatic CID [default]'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l no-vsock -d 'Do not add a vsock device (and remove one virt-systemd added)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l notify -d 'Tell the guest\'s systemd where to report readiness (vmm.notify_socket) [default]'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l no-notify -d 'Do not set the readiness socket'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -l force -d 'Replace hand-written entries for what we are asked to manage, and switch <smbios mode=\'host\'|\'emulate\'/> to \'sysinfo\''
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand rewrite" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand show" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand show" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand show" -l json -d 'Machine-readable output'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand show" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand show" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l credential -d 'Text credential io.systemd.credential:NAME=VALUE (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l credential-file -d 'Binary credential from a file, base64 in io.systemd.credential.binary: (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l secret-credential -d 'Credential passed through fw_cfg from a host file; the value stays out of the XML and QEMU\'s argv (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l remove-credential -d 'Stop managing credential NAME and remove it (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l hostname -d 'Guest hostname (credential system.hostname)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l ssh-key -d 'SSH public key, or a file of them, for root (credential ssh.authorized_keys.root; repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l kernel-cmdline -d 'Extra kernel command line arguments (repeatable)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l vhost-user-vsock -d 'Make the vsock device QEMU\'s vhost-user-vsock-pci, served by a user-space backend (vhost-device-vsock) at this vhost-user socket, for hosts or users without /dev/vhost-vsock' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l notify-port -d 'vsock port of the host\'s readiness listener [default: 8742]' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -s n -l dry-run -d 'Print a unified diff of the definition instead of changing it'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l machine-id -d 'Give the guest the domain UUID as machine ID (credential system.machine_id)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l no-machine-id -d 'Stop passing the machine ID'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l vsock -d 'Add a virtio vsock device with an automatic CID [default]'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l no-vsock -d 'Do not add a vsock device (and remove one virt-systemd added)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l notify -d 'Tell the guest\'s systemd where to report readiness (vmm.notify_socket) [default]'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l no-notify -d 'Do not set the readiness socket'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -l force -d 'Replace hand-written entries for what we are asked to manage, and switch <smbios mode=\'host\'|\'emulate\'/> to \'sysinfo\''
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand enable" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand disable" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand disable" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand disable" -s n -l dry-run -d 'Print a unified diff of the definition instead of changing it'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand disable" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand disable" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand status" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand status" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand status" -l json -d 'Machine-readable output (JSON, schema version 1)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand status" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand status" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand doctor" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand doctor" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand doctor" -l json -d 'Machine-readable output'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand doctor" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -l hook -d 'Hook binary to link to [default: virt-systemd-hook next to this program, else /usr/libexec/virt-systemd/virt-systemd-hook]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -l uninstall -d 'Remove the link instead (only if it is virt-systemd\'s)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand hook-install" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -l port -d 'vsock port [default: the config\'s notify port, 8742]' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -l hybrid -d 'A domain on a user-space vsock backend: also listen on UDS_PATH_PORT for it (repeatable; adds to [notify.hybrid] in the config)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand notify-listener" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand control-service" -l socket-dir -d 'Directory of the sockets [default: the config\'s control.socket_dir, /run/virt-systemd/control]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand control-service" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand control-service" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand control-service" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand control-service" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -l timeout -d 'Give up after this many seconds [default: wait forever]' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -l ssh -d 'Wait for ssh-access.target instead of READY=1'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand wait-ready" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand ssh" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand ssh" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand ssh" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand ssh" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand vsock-proxy" -l uds -d 'Reach the guest through a hybrid-vsock backend socket instead (CONNECT PORT)' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand vsock-proxy" -s c -l connect -d 'libvirt connection URI (like virsh -c)' -r
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand vsock-proxy" -l config -d 'Host configuration file [default: /etc/virt-systemd/config.toml when present]' -r -F
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand vsock-proxy" -s r -l readonly -d 'Open the libvirt connection read-only (like virsh -r); enough for status'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand vsock-proxy" -s h -l help -d 'Print help'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "rewrite" -d 'Rewrite a domain XML file or stdin (no libvirt needed)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "show" -d 'Show what virt-systemd manages in a domain XML, and any drift'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "enable" -d 'Wire a defined libvirt domain into systemd (rewrite its persistent definition)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "disable" -d 'Remove everything virt-systemd manages from a defined libvirt domain'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "status" -d 'What each domain carries, and whether it is running, registered and ready'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "doctor" -d 'Check this host: hook, libvirt, machined, vsock, ssh proxy, configuration'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "hook-install" -d 'Install (or remove) the libvirt hook link qemu.d/50-virt-systemd'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "notify-listener" -d 'Receive guests\' readiness notifications over AF_VSOCK (the host service)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "control-service" -d 'Serve machinectl\'s control socket for every running domain (the host service)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "wait-ready" -d 'Wait until a domain\'s guest reports READY=1 (or SSH) in its current boot'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "ssh" -d 'SSH into a domain\'s guest over vsock'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "vsock-proxy" -d 'Connect stdin/stdout to a guest\'s vsock port (for ssh\'s ProxyCommand)'
complete -c virt-systemd -n "__fish_virt_systemd_using_subcommand help; and not __fish_seen_subcommand_from rewrite show enable disable status doctor hook-install notify-listener control-service wait-ready ssh vsock-proxy help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
