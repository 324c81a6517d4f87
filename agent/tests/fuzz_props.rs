//! Property tests of every parser of host or user input: arbitrary input never panics, and inputs
//! generated in the real format parse back to what was put in. Run with the default test suite
//! (a few hundred cases each, a few seconds); `PROPTEST_CASES=100000 cargo test --test fuzz_props`
//! runs them longer. A failing case is shrunk and printed; keep it as a unit test next to the parser.

use std::path::Path;

use nodeprep::checks::device_plugins::parse_checkpoint;
use nodeprep::checks::limits::{parse_proc_limits, parse_systemd_limit, spec_path_from_config};
use nodeprep::checks::nvidia::kmsg::{parse_xid, record_message, scan_text, KmsgScan};
use nodeprep::checks::nvidia::{parse_proc_version, PciAddr};
use nodeprep::checks::storage::probe::{probe, Content, Sample, HEAD_BYTES};
use nodeprep::config::{self, Limit};
use nodeprep::host::mountinfo;
use proptest::prelude::*;

fn cases() -> ProptestConfig {
    ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(384), ..ProptestConfig::default() }
}

/// Text that looks like host files: mostly printable, with the separators parsers split on.
fn hostish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => "[a-zA-Z0-9_/.:-]{1,12}",
            2 => Just(" ".to_string()),
            1 => Just("\n".to_string()),
            1 => Just(";".to_string()),
            1 => Just(",".to_string()),
            1 => Just(" - ".to_string()),
            1 => Just("\\040".to_string()),
            1 => Just("NVRM: Xid (".to_string()),
            1 => Just("):".to_string()),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..60,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn mountinfo_never_panics(text in hostish()) {
        if let Ok(mounts) = mountinfo::parse(&text) {
            for m in &mounts {
                let _ = mountinfo::top_at(&mounts, &m.mount_point);
            }
        }
        let _ = mountinfo::unescape(&text);
    }

    #[test]
    fn mountinfo_lines_round_trip(id in 1u64..100000, parent in 1u64..100000, major in 0u32..4096, minor in 0u32..1_000_000,
                                   dir in "/[a-z0-9 ]{1,20}", fstype in "[a-z0-9]{2,8}", opts in prop::collection::vec("[a-z]{2,8}", 1..5)) {
        let esc = |p: &str| p.replace(' ', "\\040");
        let line = format!("{id} {parent} {major}:{minor} / {} {} shared:1 - {fstype} /dev/x rw\n", esc(&dir), opts.join(","));
        let m = &mountinfo::parse(&line).unwrap()[0];
        prop_assert_eq!((m.id, m.parent, m.dev), (id, parent, (major, minor)));
        prop_assert_eq!(&m.mount_point, &dir);
        prop_assert_eq!(&m.fstype, &fstype);
        prop_assert_eq!(&m.options, &opts);
    }

    #[test]
    fn disk_signature_probe_never_panics(head in prop::collection::vec(any::<u8>(), 0..6000), tail in prop::collection::vec(any::<u8>(), 0..600),
                                         size in any::<u64>(), at in 0usize..HEAD_BYTES, magic in prop::sample::select(vec![
                                             &b"XFSB"[..], &[0xfc, 0x4e, 0x2b, 0xa9], &[0x53, 0xef], b"LABELONE", b"EFI PART", b"_BHRfS_M"])) {
        let _ = probe(&Sample { head: &head, tail: &tail, size }).describe();
        // A magic number at an arbitrary place of otherwise arbitrary bytes.
        let mut h = vec![0u8; HEAD_BYTES];
        h[..head.len()].copy_from_slice(&head);
        let end = (at + magic.len()).min(HEAD_BYTES);
        h[at..end].copy_from_slice(&magic[..end - at]);
        let _ = probe(&Sample { head: &h, tail: &tail, size: size.max(1) }).describe();
    }

    #[test]
    fn md_superblocks_round_trip(name in "[a-z][a-z0-9-]{0,20}", role in 0u16..32, disks in 1u32..33, uuid in any::<[u8; 16]>()) {
        let role = role % disks as u16;
        let sb = nodeprep_fixtures::md_superblock(&name, uuid, role, disks);
        match probe(&Sample { head: &sb, tail: &[], size: 1 << 40 }) {
            Content::Md(m) => {
                prop_assert_eq!(m.name, name);
                prop_assert_eq!(m.uuid, uuid);
                prop_assert_eq!(m.role, Some(role as u32));
                prop_assert_eq!(m.raid_disks, disks);
            }
            other => prop_assert!(false, "not md: {:?}", other),
        }
    }

    #[test]
    fn kmsg_never_panics(text in hostish()) {
        let mut out = KmsgScan::default();
        scan_text(&text, &mut out);
        for line in text.lines() {
            if let Some(m) = record_message(line) {
                let _ = parse_xid(m);
            }
            let _ = parse_xid(line);
        }
    }

    #[test]
    fn xid_records_round_trip(seq in 0u64..1_000_000, usec in any::<u32>(), bus in 0u8..=255, xid in 0u32..1000, pid in 0u32..100000, msg in "[A-Za-z ,.]{0,40}") {
        let line = format!("3,{seq},{usec},-;NVRM: Xid (PCI:0000:{bus:02x}:00): {xid}, pid={pid}, {msg}");
        let m = record_message(&line).unwrap();
        let e = parse_xid(m).unwrap();
        prop_assert_eq!(e.xid, xid);
        prop_assert_eq!(e.pci.map(|p| p.bus), Some(bus));
        let mut out = KmsgScan::default();
        scan_text(&format!("{line}\n"), &mut out);
        prop_assert_eq!(out.xids.len(), 1);
    }

    #[test]
    fn proc_limits_never_panic_and_round_trip(text in hostish(), memlock in prop::option::of(0u64..u64::MAX / 2)) {
        let _ = parse_proc_limits(&text, "Max locked memory");
        let _ = parse_systemd_limit(&text);
        let _ = Limit::parse(&text);
        let file = nodeprep_fixtures::proc_limits(memlock, None);
        let want = memlock.map_or(Limit::Unlimited, Limit::Bytes);
        prop_assert_eq!(parse_proc_limits(&file, "Max locked memory"), Some(want));
    }

    #[test]
    fn sysfs_and_driver_values_never_panic(text in hostish()) {
        let _ = PciAddr::parse(&text);
        let _ = parse_proc_version(&text);
        let _ = spec_path_from_config(&text);
    }

    #[test]
    fn pci_addresses_round_trip(domain in 0u32..0x10000, bus in any::<u8>(), dev in 0u8..32, func in 0u8..8) {
        let a = PciAddr::parse(&format!("{domain:04x}:{bus:02x}:{dev:02x}.{func}")).unwrap();
        prop_assert_eq!((a.bus, a.device, a.function), (bus, dev, Some(func)));
    }

    #[test]
    fn checkpoint_json_never_panics(text in hostish(), n in 0usize..40) {
        let _ = parse_checkpoint(&text);
        let ids: Vec<String> = (0..n).map(|i| format!("\"GPU-{i}\"")).collect();
        let good = format!("{{\"Data\":{{\"RegisteredDevices\":{{\"nvidia.com/gpu\":[{}]}}}},\"Checksum\":1}}", ids.join(","));
        prop_assert_eq!(parse_checkpoint(&good).unwrap(), vec![("nvidia.com/gpu".to_string(), n)]);
    }

    #[test]
    fn config_is_accepted_or_rejected_with_file_and_line(text in hostish(), key in prop::sample::select(vec![
        "instance_type", "[storage]\nmount_point", "[storage]\ndevices", "[limits]\nmemlock", "[serve]\nlisten", "[expect]\ngpus", "[nvidia]\nfatal_xids",
    ]), value in prop_oneof![hostish().prop_map(|s| format!("{s:?}")), any::<i64>().prop_map(|n| n.to_string()), Just("[]".to_string())]) {
        for doc in [text.clone(), format!("{key} = {value}\n")] {
            match config::parse(&doc, Path::new("/etc/nodeprep/config.toml")) {
                Ok(_) => {}
                Err(e) => {
                    let msg = e.to_string();
                    prop_assert!(msg.starts_with("/etc/nodeprep/config.toml"), "error does not name the file: {}", msg);
                }
            }
        }
    }
}
