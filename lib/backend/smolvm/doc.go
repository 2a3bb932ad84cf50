// Package smolvm holds the smolvm backend: each bottle is two microVMs
// (smol-machines/smolvm, on libkrun: Hypervisor.framework on macOS, KVM on
// Linux), the agent's and the egress sidecar's, driven through the smolvm
// command line.
//
// # What it follows
//
// smol-machines/smolvm at release v1.9.3 (tag commit 21b51875, 2026-08-21):
// README.md and AGENTS.md (the CLI's own --help text: flags, networking,
// secrets, persistence, packs), docs/network-virtio-policy-macos-plan.md,
// src/cli/machine.rs (create, start, stop, delete, ls, exec, cp),
// src/cli/pack.rs (pack create --from-vm), src/cli/vm_common.rs (the
// machine ls --json object, machine_status_json; what start does with
// secrets and the workload), src/config.rs (machine states), src/data/mod.rs
// (machine names), src/network/launch.rs and crates/smolvm-network/src/
// {egress,stack,fabric,dns,tcp_relay}.rs (the network), src/smolfile.rs
// (--allow-host). internal/syntax is the command-line table, each flag
// cited to its definition. bb needs smolvm 1.9.0 or later and refuses to
// launch on anything older, naming it (exit 3): named networks (--network,
// 1.8.3) are the agent's only way to its sidecar, and machine cp
// --uid/--gid/--mode (1.9.0) give the agent its files as its own.
//
// # The way out
//
// A bottle is two machines on a named network of its own,
// bot-bottle-<slug>-internal (machine create --network): the sidecar,
// started first, leases the network's lowest subnet and is 100.96.1.2; the
// agent is 100.96.2.2 (fabric.rs: each member leases the lowest free /30 of
// 100.96.0.0/16, guest .2, gateway .1). The sidecar is created with --net
// and no allow-list: it reaches what the host reaches but the cloud metadata
// range (egress.rs FloorMode::MetadataOnly), and bb-egress itself refuses
// private, loopback and carrier-grade NAT addresses, its own gateway
// 100.96.1.1 (which smolvm relays to the host's loopback, tcp_relay.rs
// host_connect_addr) among them, unless a route names one.
//
// The agent is created with --network, --allow-host 100.96.1.2 and --dns
// 127.0.0.1, and nothing else that opens a way: no --net of its own, no -p, no
// --ssh-agent, no --mount-socket or --expose-socket, no --docker-socket.
// Why nothing but the sidecar is reachable, for any process in the agent's
// VM, root included (it can write raw frames to its NIC, so nothing below
// rests on the guest's routing table):
//
//   - Every frame the agent's NIC sends goes to smolvm's gateway for it
//     (stack.rs; virtio-net, which a named network and an egress policy
//     both force: launch.rs plan_launch_network, and
//     validate_requested_network_backend refuses an explicit TSI with
//     either, since TSI does not enforce the allow-list).
//   - An IPv4 packet to another member's /30 of the fabric is forwarded to
//     that member as it is (stack.rs classify_guest_frame,
//     FrameAction::Fabric), before any policy. The network is the bottle's
//     own and has two members, so that reaches the sidecar and nothing
//     else: a fabric address no member holds is dropped. What arrives is
//     addressed to the sidecar's VM itself, whose kernel delivers it to
//     bb-egress or refuses it; smolvm configures no forwarding there.
//   - Everything else — TCP, UDP, ICMP, IPv4 or IPv6, to the internet, the
//     host's network, or the gateway itself (which is the host's loopback)
//     — passes the egress policy first (tcp_relay.rs destination_allowed,
//     udp_relay, icmp_relay; egress.rs EgressPolicy::allows). --allow-host
//     100.96.1.2 makes the policy a restricted one whose one allowed CIDR is
//     100.96.1.2/32 (machine.rs resolve_egress_flags: an IP literal is its
//     own CIDR, src/smolfile.rs resolve_host_to_cidrs), a fabric address the
//     rule above has already taken. So the policy allows nothing; the
//     gateway 100.96.2.1 is refused, and with it the host's loopback.
//   - DNS: every UDP or TCP datagram to port 53, to any address, is answered
//     by the gateway itself (stack.rs add_dns_socket binds the wildcard with
//     any_ip), never relayed. --allow-host is also what turns the gateway's
//     DNS filter on (egress.rs dns_filter_active; an --allow-cidr alone would
//     leave it off and forward every name upstream, a way out for anything
//     spelled into a name). With it, only names equal to or under an allowed
//     host are forwarded, and every other one is answered NXDOMAIN at the
//     gateway (stack.rs classify_dns_query). The one allowed host is
//     100.96.1.2, so the only names that can leave end in the label "2" (or
//     in one holding dots): no top-level domain is all-numeric (RFC 3696
//     §2), so no name server anyone could register is ever asked. And
//     they go where --dns 127.0.0.1 sends the gateway's queries: the host's
//     loopback, where usually nothing answers (macOS, or Linux with
//     systemd-resolved on 127.0.0.53), and where something does, a local
//     resolver that answers NXDOMAIN from the root. (One that invents an
//     address for a name that does not exist would make that address
//     reachable: the gateway learns the addresses of forwarded answers.)
//     host.smolvm.internal is answered with the gateway's address, which
//     the policy refuses.
//   - smolvm's own channels to the VM — vsock for its agent, virtiofs for
//     mounts — are its trusted base (README "Security Model"); bb mounts
//     the workspace and the bottle's git folders and nothing else, and
//     removes SMOLVM_GUEST_HOST_SERVICE from smolvm's environment, the one
//     variable that would let a guest reach a host port through its gateway
//     (launch.rs guest_host_service).
//
// # Tokens
//
// Token values reach only the sidecar: it is created with --secret-env
// EGRESS_TOKEN_<NAME>=EGRESS_TOKEN_<NAME>, a reference smolvm keeps in place
// of a value (AGENTS.md "Secrets"), and the values are in the environment of
// the one `machine start` of the sidecar, which resolves them into its
// workload's environment. No command line, no machine record, no file and no
// other smolvm process sees them: every smolvm process bb runs gets only
// the part of the person's environment it needs (PATH, HOME, the XDG
// folders, locale, TERM, SMOLVM_* settings), so neither the values nor the
// host variables they were read from reach it, or the VM processes it
// leaves running.
//
// # The rest
//
// The agent's VM boots the agent image as a `docker save` archive (smolvm
// boots images, it does not build them: bb builds it with the Docker engine,
// as for the Docker backend); the sidecar's boots a root filesystem folder
// in the bottle's state holding the static bb-egress. The agent's command
// runs under bb-egress guest hold (lib/ttyhold), which bb copies into the
// agent's VM: smolvm has no attach. A snapshot is `smolvm pack create
// --from-vm` of the stopped agent, a .smolmachine file in the bottle's state;
// resume creates the agent from the newest one (machine create --from).
package smolvm
