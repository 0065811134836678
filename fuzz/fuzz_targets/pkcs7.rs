//! EST answers from the bank: certs-only PKCS#7, DER or BER, bare or in
//! the lenient base64 RFC 8951 asks for (src/pkcs7.rs).
#![no_main]

use certagent::pkcs7::{
    decode_base64, decode_certs_only, decode_response, encode_base64_lines, encode_certs_only,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The base64 the client writes is read back exactly, whatever the bytes.
    let lines = encode_base64_lines(data);
    assert_eq!(decode_base64(lines.as_bytes()).ok().as_deref(), Some(data));

    let _ = decode_base64(data);
    let _ = decode_certs_only(data);
    if let Ok(mut certs) = decode_response(data) {
        assert!(!certs.is_empty(), "a certs-only answer holds a certificate");
        // What was read can be sent on (the bank does) and reads as the
        // same set: SET OF has no order, DER sorts it by encoding.
        if let Ok(der) = encode_certs_only(&certs) {
            certs.sort();
            assert_eq!(decode_certs_only(&der).ok(), Some(certs.clone()));
            let b64 = encode_base64_lines(&der);
            assert_eq!(decode_response(b64.as_bytes()).ok(), Some(certs));
        }
    }
});
