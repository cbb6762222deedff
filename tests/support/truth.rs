//! What integration tests check meshgate against, written independently of meshgate: the
//! reference mesh's raw files, read straight from the S3 server's disk, and the published
//! protections (docs/reference-mesh.md) re-implemented from their description.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Where the tests generate the reference mesh (shared by the test binaries).
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-mesh")
}

/// Register the raw tables as `<prefix>counterparties`, `<prefix>transactions` and
/// `<prefix>trades`.
pub async fn register_raw(ctx: &SessionContext, prefix: &str) {
    let lake = data_dir().join("s3");
    for (name, path) in [
        (
            "counterparties",
            "reference-counterparties/data/counterparties/",
        ),
        ("transactions", "payments-transactions/data/transactions/"),
        ("trades", "markets-trades/data/trades/"),
    ] {
        ctx.register_parquet(
            format!("{prefix}{name}"),
            lake.join(path).to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
}

/// The published token scheme: `tok_` + base64url(HMAC-SHA256(HKDF(master, domain), value)).
pub fn token(domain: &str, value: &str) -> String {
    static KEYS: OnceLock<Mutex<HashMap<String, [u8; 32]>>> = OnceLock::new();
    let key = *KEYS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap()
        .entry(domain.to_string())
        .or_insert_with(|| {
            let master =
                Sha256::digest(b"meshgate demo master key - public, never use for real data");
            let hk = Hkdf::<Sha256>::new(Some(b"meshgate.tokenize.v1"), &master);
            let mut key = [0u8; 32];
            hk.expand(format!("token-domain:{domain}").as_bytes(), &mut key)
                .unwrap();
            key
        });
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(value.as_bytes());
    format!(
        "tok_{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The e-mail mask: the local part becomes `***`, the domain stays.
pub fn email_mask(email: &str) -> String {
    match email.rfind('@') {
        Some(at) => format!("***{}", &email[at..]),
        None => "***".into(),
    }
}

/// Show-last-4: every character but the last four becomes `*`.
pub fn show_last_4(value: &str) -> String {
    let n = value.chars().count();
    value
        .chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}
