//! What never goes into a support bundle: files that hold credentials are not read at all, and
//! every text that is read has its secret values replaced by `REDACTED` before it is archived.
//!
//! Over-redaction is the safe error: a value behind any key that names a password, secret, token,
//! credential or private key is replaced, whatever the format (TOML, JSON, YAML, `KEY=value`
//! environment lines, HTTP headers in logs).

use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Why a host path is never read into a bundle, or `None` when it may be.
pub fn secret_path(host_path: &str) -> Option<&'static str> {
    let p = host_path.to_ascii_lowercase();
    let name = p.rsplit('/').next().unwrap_or(&p);
    let rules: &[(bool, &'static str)] = &[
        (name.contains("kubeconfig") || p.contains("/.kube/"), "a kubeconfig (client credentials)"),
        (p.contains("/pki/") || p.contains("/ssl/private/"), "a key and certificate store"),
        ([".key", ".pem", ".p12", ".pfx", ".jks"].iter().any(|s| name.ends_with(s)), "a key file"),
        (
            name.contains("token") || name.contains("credential") || name.contains("secret"),
            "named as a secret",
        ),
        (
            p.contains("/.aws/") || p.contains("/.docker/config.json"),
            "cloud or registry credentials",
        ),
        (
            p.contains("/var/lib/cloud/") || name.starts_with("user-data"),
            "instance userData (often holds secrets)",
        ),
        (
            p.contains("/etc/shadow") || p.contains("/etc/gshadow") || p.contains("/etc/ssh/"),
            "system credentials",
        ),
        (p.contains("/serviceaccount/"), "a service account token"),
    ];
    rules.iter().find(|(hit, _)| *hit).map(|(_, why)| *why)
}

/// A key that names a secret, in any case and with any prefix or suffix (`registry_password`,
/// `AWS_SECRET_ACCESS_KEY`, `SecretAccessKey`, `client-key-data`, `"Token"`), then `=` or `:`,
/// then a value: quoted, or up to whitespace or a separator.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?ix)
        (?P<key>
          ["']?[a-z0-9_.-]*
          (?:password|passwd|passphrase|secret|token|credential|private[_-]?key|client[_-]?key|access[_-]?key|api[_-]?key|\bauth\b|identitytoken)
          [a-z0-9_.-]*["']?
          \s*[:=]\s*
        )
        (?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,;}\]\)]+)
        "#,
    )
    .expect("key-value pattern compiles")
});

/// Everything else that looks like a credential wherever it stands.
static LOOSE: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
            "-----REDACTED PRIVATE KEY-----",
        ),
        (r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", "$1 REDACTED"),
        (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", "REDACTED-JWT"),
        (r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", "REDACTED-AWS-KEY-ID"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).expect("pattern compiles"), r))
    .collect()
});

/// `text` with every secret value replaced, and how many were.
pub fn redact(text: &str) -> (String, usize) {
    let mut count = 0;
    let out = KEY_VALUE.replace_all(text, |c: &Captures| {
        let (key, value) = (&c["key"], &c["value"]);
        let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'');
        let inner = match quote {
            Some(_) if value.len() >= 2 => &value[1..value.len() - 1],
            _ => value,
        };
        // Empty values, and values that are themselves a redaction, stay.
        if inner.is_empty() || inner.starts_with("REDACTED") {
            return format!("{key}{value}");
        }
        count += 1;
        match quote {
            Some(q) => format!("{key}{q}REDACTED{q}"),
            None => format!("{key}REDACTED"),
        }
    });
    let mut out = out.into_owned();
    for (re, with) in LOOSE.iter() {
        let n = re.find_iter(&out).filter(|m| !m.as_str().contains("REDACTED")).count();
        if n > 0 {
            count += n;
            out = re.replace_all(&out, *with).into_owned();
        }
    }
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_replaced_in_every_format() {
        let cases = [
            (
                "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".auth]\npassword = \"hunter2\"\nauth = \"dXNlcjpodW50ZXIy\"\nidentitytoken = 'tok'\n",
                "[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".auth]\npassword = \"REDACTED\"\nauth = \"REDACTED\"\nidentitytoken = 'REDACTED'\n",
                3,
            ),
            (
                r#"{"Code":"Success","AccessKeyId":"ASIAEXAMPLEEXAMPLE12","SecretAccessKey":"wJalrXUtnFEMI/K7MDENG","Token":"IQoJb3JpZ2luX2VjE"}"#,
                r#"{"Code":"Success","AccessKeyId":"REDACTED","SecretAccessKey":"REDACTED","Token":"REDACTED"}"#,
                3,
            ),
            ("AWS_SECRET_ACCESS_KEY=abc/def+ghi env", "AWS_SECRET_ACCESS_KEY=REDACTED env", 1),
            ("users:\n- user:\n    token: sha256~abcdef\n    client-key-data: LS0tLS1\n", "users:\n- user:\n    token: REDACTED\n    client-key-data: REDACTED\n", 2),
            ("GET / Authorization: Bearer abcdefghijklmnop", "GET / Authorization: Bearer REDACTED", 1),
            ("id eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW0ifQ.c2lnbmF0dXJl end", "id REDACTED-JWT end", 1),
            ("key AKIAIOSFODNN7EXAMPLE in a log", "key REDACTED-AWS-KEY-ID in a log", 1),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n", "-----REDACTED PRIVATE KEY-----\n", 1),
        ];
        for (input, want, n) in cases {
            assert_eq!(redact(input), (want.to_string(), n), "{input}");
        }
    }

    #[test]
    fn what_is_not_a_secret_stays() {
        for text in [
            "startup_taint = \"nodeprep.io/not-ready\"\n",
            "kubeconfig = \"\"\n",
            "memlock = \"unlimited\"\nstate: 4: ACTIVE\n",
            "NVRM: Xid (PCI:0000:75:00): 79, pid=1, GPU has fallen off the bus.\n",
            "author = \"x\"\n",
        ] {
            assert_eq!(redact(text), (text.to_string(), 0), "{text}");
        }
        // Idempotent: a redacted text is left as it is.
        let (once, _) = redact("password = \"x\"\nBearer abcdefghijk\n");
        assert_eq!(redact(&once), (once.clone(), 0));
    }

    #[test]
    fn credential_files_are_never_read() {
        for p in [
            "/var/lib/kubelet/kubeconfig",
            "/etc/kubernetes/kubelet/kubeconfig",
            "/root/.kube/config",
            "/etc/kubernetes/pki/ca.key",
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            "/root/.aws/credentials",
            "/var/lib/cloud/instance/user-data.txt",
            "/etc/eks/bootstrap-token",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        ] {
            assert!(secret_path(p).is_some(), "{p}");
        }
        for p in
            ["/etc/containerd/config.toml", "/proc/mdstat", "/etc/kubernetes/kubelet/config.json"]
        {
            assert_eq!(secret_path(p), None, "{p}");
        }
    }
}
