//! The token layer against a real SoftHSM token, checked with openssl and
//! pkcs11-tool. One process per test (see tests/common).

mod common;

use std::process::Command;
use std::sync::Arc;

use certagent::cert::Cert;
use certagent::drivers::Drivers;
use certagent::token::{
    KeyKind, Module, SignScheme, Token, TokenError, TokenSelector, ecdsa_raw_to_der,
    key_id_for_spki,
};
use common::{LABEL, OpensslCa, PIN, SoftHsm, openssl, run, spki_pem};
use cryptoki::types::AuthPin;

fn open(hsm: &SoftHsm) -> Token {
    hsm.activate();
    let module: Arc<Module> = Module::load(
        &common::softhsm_module().display().to_string(),
        &Drivers::builtin(),
    )
    .expect("load SoftHSM");
    assert_eq!(module.info().profile.as_deref(), Some("softhsm2"));
    module
        .open(&TokenSelector {
            label: Some(LABEL.into()),
            ..Default::default()
        })
        .expect("open token")
}

fn logged_in(hsm: &SoftHsm) -> Token {
    let token = open(hsm);
    token
        .login(Some(&AuthPin::from(PIN.to_string())))
        .expect("login");
    token
}

/// SHA-1 of the key material as openssl sees it, from the public key alone.
fn sha1_of_public_key_openssl(dir: &std::path::Path, pem: &std::path::Path, rsa: bool) -> Vec<u8> {
    let bytes = if rsa {
        let out = run(openssl()
            .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
            .arg(pem));
        hex::decode(out.trim().trim_start_matches("Modulus=")).expect("modulus hex")
    } else {
        // The last 65 bytes of a P-256 SubjectPublicKeyInfo are the point.
        let der = dir.join("ec-pub.der");
        run(openssl()
            .args(["pkey", "-pubin", "-in"])
            .arg(pem)
            .args(["-outform", "DER", "-out"])
            .arg(&der));
        let d = std::fs::read(der).expect("der");
        d[d.len() - 65..].to_vec()
    };
    use sha1::Digest;
    sha1::Sha1::digest(bytes).to_vec()
}

fn check_generated(kind: KeyKind) {
    let hsm = SoftHsm::new();
    let token = logged_in(&hsm);
    let key = token.generate_key_pair(kind, "candidate").expect("keygen");

    // CKA_ID is the SHA-1 of the modulus / EC point, recomputed by openssl.
    let pem = spki_pem(hsm.path(), "pub", &key.spki_der);
    let expected = sha1_of_public_key_openssl(hsm.path(), &pem, kind.is_rsa());
    assert_eq!(key.id, expected, "CKA_ID rule");
    assert_eq!(key_id_for_spki(&key.spki_der), Some(expected));

    // The private key's attributes read back from the token.
    let k = token.private_key(&key.id).expect("read").expect("present");
    assert!(k.token && k.private && k.sensitive && k.sign, "{k:?}");
    assert!(
        !k.extractable && k.never_extractable && k.always_sensitive && k.local,
        "{k:?}"
    );
    assert_eq!(
        token.public_key(&key.id).expect("pub"),
        Some(key.spki_der.clone())
    );

    // pkcs11-tool sees the pair under the same id, and its private key's
    // attributes say it cannot leave the token: sensitive, never
    // extractable, made on the token. (pkcs11-tool cannot export private
    // keys at all, so an export attempt would prove nothing.)
    let id = hex::encode(&key.id);
    let access = private_key_access(&hsm, &id);
    for flag in ["sensitive", "never extractable", "local"] {
        assert!(access.contains(flag), "private key {id}: {access}");
    }
    assert!(
        !access.contains(", extractable"),
        "private key {id}: {access}"
    );
    // Positive control: a key made extractable by pkcs11-tool reads as such.
    let out = hsm.pkcs11_tool(&[
        "--login",
        "--pin",
        PIN,
        "--keypairgen",
        "--key-type",
        "rsa:2048",
        "--id",
        "7e",
        "--extractable",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let control = private_key_access(&hsm, "7e");
    assert!(
        control.contains(", extractable") && !control.contains("never extractable"),
        "the control key: {control}"
    );
}

/// The `Access:` line pkcs11-tool prints for the private key `id` (its
/// listing shows every private key: the block of `id` is picked out).
fn private_key_access(hsm: &SoftHsm, id: &str) -> String {
    let out = hsm.pkcs11_tool(&["--login", "--pin", PIN, "-O", "--type", "privkey"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut block_id = None;
    for line in listing.lines() {
        if line.starts_with("Private Key Object") {
            block_id = None;
        } else if let Some(v) = line.trim().strip_prefix("ID:") {
            block_id = Some(v.trim().to_string());
        } else if let Some(v) = line.trim().strip_prefix("Access:")
            && block_id.as_deref() == Some(id)
        {
            return v.trim().to_string();
        }
    }
    panic!("no Access line for the private key {id}: {listing}")
}

#[test]
fn generates_rsa_2048_on_the_token() {
    check_generated(KeyKind::Rsa2048);
}

#[test]
fn generates_rsa_3072_on_the_token() {
    check_generated(KeyKind::Rsa3072);
}

#[test]
fn generates_ec_p256_on_the_token() {
    check_generated(KeyKind::EcP256);
}

fn openssl_verifies(
    hsm: &SoftHsm,
    pem: &std::path::Path,
    scheme: SignScheme,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let dir = hsm.path();
    std::fs::write(dir.join("msg"), msg).expect("msg");
    let sig = if scheme == SignScheme::EcdsaP256Sha256 {
        ecdsa_raw_to_der(sig).expect("der")
    } else {
        sig.to_vec()
    };
    std::fs::write(dir.join("sig"), &sig).expect("sig");
    let mut cmd = openssl();
    cmd.args(["dgst", "-sha256", "-verify"]).arg(pem);
    if scheme == SignScheme::RsaPssSha256 {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]);
    }
    cmd.arg("-signature")
        .arg(dir.join("sig"))
        .arg(dir.join("msg"));
    cmd.output().expect("openssl").status.success()
}

#[test]
fn every_signature_scheme_verifies_in_openssl() {
    let hsm = SoftHsm::new();
    let token = logged_in(&hsm);
    let rsa = token
        .generate_key_pair(KeyKind::Rsa2048, "rsa")
        .expect("rsa");
    let ec = token.generate_key_pair(KeyKind::EcP256, "ec").expect("ec");
    let rsa_pem = spki_pem(hsm.path(), "rsa", &rsa.spki_der);
    let ec_pem = spki_pem(hsm.path(), "ec", &ec.spki_der);
    let msg = b"SHA-256(origin) || SHA-256(challenge) stand-in";
    for (key, pem, scheme) in [
        (&rsa, &rsa_pem, SignScheme::RsaPkcs1Sha256),
        (&rsa, &rsa_pem, SignScheme::RsaPssSha256),
        (&ec, &ec_pem, SignScheme::EcdsaP256Sha256),
    ] {
        assert!(token.supports(scheme), "{scheme}");
        let sig = token.sign(&key.id, scheme, msg).expect("sign");
        if scheme == SignScheme::EcdsaP256Sha256 {
            assert_eq!(sig.len(), 64, "r||s");
        }
        assert!(
            openssl_verifies(&hsm, pem, scheme, msg, &sig),
            "{scheme} rejected by openssl"
        );
        assert!(certagent::cert::verify(&key.spki_der, scheme, msg, &sig));
        // The same signature over another message must not verify: the check can fail.
        assert!(!openssl_verifies(
            &hsm,
            pem,
            scheme,
            b"another message",
            &sig
        ));
    }
    // A scheme that does not fit the key is refused by the token, not faked.
    assert!(token.sign(&ec.id, SignScheme::RsaPkcs1Sha256, msg).is_err());
}

#[test]
fn signing_without_login_is_a_clear_error() {
    let hsm = SoftHsm::new();
    let token = logged_in(&hsm);
    let key = token
        .generate_key_pair(KeyKind::EcP256, "k")
        .expect("keygen");
    drop(token);
    // A fresh session after the last one closed is logged out.
    let token = open(&hsm);
    let e = token
        .sign(&key.id, SignScheme::EcdsaP256Sha256, b"x")
        .unwrap_err();
    assert!(
        matches!(e, TokenError::KeyNotFound { .. } | TokenError::NotLoggedIn),
        "{e:?}"
    );
}

#[test]
fn certificate_objects_round_trip_and_other_tools_read_them() {
    let hsm = SoftHsm::new();
    let token = logged_in(&hsm);
    let key = token
        .generate_key_pair(KeyKind::Rsa2048, "bank key")
        .expect("keygen");
    let pem = spki_pem(hsm.path(), "pub", &key.spki_der);
    let ca = OpensslCa::new(hsm.path());
    let der = ca.issue(
        "user",
        &pem,
        "/C=SI/O=Firma d.o.o./CN=Ana Novak",
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\nsubjectAltName=email:ana@firma.example\n",
    );
    token
        .write_certificate(&key.id, "bank certificate", &der)
        .expect("write");

    let objs = token.certificates().expect("list");
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].der, der);
    assert_eq!(objs[0].id, key.id);
    assert_eq!(objs[0].label, "bank certificate");
    let cert = Cert::from_der(&der).expect("parse");
    assert_eq!(cert.san, ["email:ana@firma.example"]);

    // pkcs11-tool reads subject and serial from the object's own attributes.
    let listing =
        String::from_utf8_lossy(&hsm.pkcs11_tool(&["-O", "--type", "cert"]).stdout).into_owned();
    assert!(listing.contains("CN=Ana Novak"), "{listing}");
    assert!(listing.contains(&cert.serial), "{listing}");
    assert!(listing.contains(&hex::encode(&key.id)), "{listing}");
    // p11tool (GnuTLS) lists it too, and exports the same bytes.
    common::require("p11tool");
    let uri = format!(
        "pkcs11:token={LABEL};id=%{}",
        hex::encode(&key.id)
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("%")
    );
    let exported = run(Command::new("p11tool")
        .env("SOFTHSM2_CONF", hsm.conf())
        .arg("--provider")
        .arg(common::softhsm_module())
        .args(["--export", &format!("{uri};type=cert")]));
    let exported_der = pem_to_der(&exported);
    assert_eq!(exported_der, der);

    // Deleting the pair and certificate leaves nothing under that id.
    assert_eq!(token.delete_all(&key.id).expect("delete"), 3);
    assert!(token.certificates().expect("list").is_empty());
    assert!(token.private_key(&key.id).expect("read").is_none());
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let (_, der) = der::pem::decode_vec(pem.trim().as_bytes()).expect("pem");
    der
}

#[test]
fn csr_signed_on_the_token_verifies_in_openssl_and_copies_subject_and_san() {
    let hsm = SoftHsm::new();
    let token = logged_in(&hsm);
    let ca = OpensslCa::new(hsm.path());
    for (n, kind) in [KeyKind::Rsa2048, KeyKind::EcP256].into_iter().enumerate() {
        let old = token.generate_key_pair(kind, "old").expect("old key");
        let pem = spki_pem(hsm.path(), &format!("old{n}"), &old.spki_der);
        let der = ca.issue(
            &format!("old{n}"),
            &pem,
            "/C=SI/O=Firma d.o.o./OU=Finance/CN=Ana Novak",
            "subjectAltName=email:ana@firma.example,DNS:ana.firma.example\n",
        );
        let template = Cert::from_der(&der).expect("parse");
        let new = token.generate_key_pair(kind, "candidate").expect("new key");
        let csr = certagent::csr::build(&token, &new.id, &new.spki_der, &template).expect("csr");

        let path = hsm.path().join(format!("req{n}.der"));
        std::fs::write(&path, &csr).expect("write csr");
        let out = openssl()
            .args(["req", "-verify", "-noout", "-text", "-inform", "DER", "-in"])
            .arg(&path)
            .output()
            .expect("openssl req");
        let all = common::text(&out);
        assert!(out.status.success(), "{all}");
        assert!(
            all.contains("verify OK")
                || all.contains("Certificate request self-signature verify OK"),
            "{all}"
        );
        assert!(
            all.contains("ana@firma.example") && all.contains("DNS:ana.firma.example"),
            "{all}"
        );

        // Byte for byte: the request's subject is the certificate's subject.
        let (_, subject) = certagent::cert::raw_issuer_subject(&der).expect("subject");
        assert!(csr.windows(subject.len()).any(|w| w == subject.as_slice()));
        // And the request carries the new key, not the old one.
        let new_pub = hsm.path().join(format!("new{n}.pem"));
        run(openssl()
            .args(["req", "-pubkey", "-noout", "-inform", "DER", "-in"])
            .arg(&path)
            .arg("-out")
            .arg(&new_pub));
        assert_eq!(
            std::fs::read_to_string(&new_pub).expect("pub"),
            std::fs::read_to_string(spki_pem(hsm.path(), &format!("cand{n}"), &new.spki_der))
                .expect("pub")
        );
    }
}

#[test]
fn wrong_pin_is_reported_once_and_not_retried() {
    let hsm = SoftHsm::new();
    let token = open(&hsm);
    let e = token
        .login(Some(&AuthPin::from("000000".to_string())))
        .unwrap_err();
    assert!(matches!(e, TokenError::PinIncorrect { .. }), "{e:?}");
    assert!(e.to_string().contains("not retried"), "{e}");
    // SoftHSM flags a failed login; the right PIN still works afterwards.
    assert!(token.info().expect("info").pin_count_low);
    assert!(!token.is_logged_in());
    token
        .login(Some(&AuthPin::from(PIN.to_string())))
        .expect("right PIN");
    assert!(token.is_logged_in());
}

#[test]
fn token_not_present_names_what_is() {
    let hsm = SoftHsm::new();
    hsm.activate();
    let module = Module::load(
        &common::softhsm_module().display().to_string(),
        &Drivers::builtin(),
    )
    .expect("load");
    let e = module
        .open(&TokenSelector {
            label: Some("no-such-token".into()),
            ..Default::default()
        })
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, TokenError::NotFound { .. }), "{e:?}");
    assert!(
        msg.contains("no-such-token") && msg.contains(LABEL),
        "{msg}"
    );
}

#[test]
fn objects_made_by_pkcs11_tool_are_read_with_their_ids() {
    let hsm = SoftHsm::empty();
    hsm.provision(LABEL, &[200, -5]);
    let token = logged_in(&hsm);
    let mut ids: Vec<String> = token
        .certificates()
        .expect("list")
        .iter()
        .map(|c| hex::encode(&c.id))
        .collect();
    ids.sort();
    assert_eq!(ids, ["01", "02"]);
    for c in token.certificates().expect("list") {
        let cert = Cert::from_der(&c.der).expect("parse");
        // The key pkcs11-tool made signs, and the signature matches the certificate.
        let sig = token
            .sign(&c.id, SignScheme::RsaPkcs1Sha256, b"hello")
            .expect("sign");
        assert!(certagent::cert::verify(
            &cert.spki_der,
            SignScheme::RsaPkcs1Sha256,
            b"hello",
            &sig
        ));
        assert_eq!(
            token.public_key(&c.id).expect("pub"),
            Some(cert.spki_der.clone())
        );
    }
}
