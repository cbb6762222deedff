//! A test certificate authority (rcgen): a CA and certificates it signs, for TLS servers
//! and clients in tests.

#![allow(dead_code)] // each test module uses a different part

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA: its certificate (PEM) and what signs with it.
pub struct Pki {
    pub ca_pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

pub fn certificate_authority(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let ca_pem = params.self_signed(&key).unwrap().pem();
    Pki {
        ca_pem,
        issuer: Issuer::new(params, key),
    }
}

/// A certificate and its key (PEM) signed by `pki`.
pub fn issue(
    pki: &Pki,
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    issue_for(pki, names, common_name, vec![usage])
}

/// [`issue`] for several uses (a node that serves and is a client too).
pub fn issue_for(
    pki: &Pki,
    names: &[&str],
    common_name: &str,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = usages;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}
