//! Objects on the token: certificates, keys and their attributes, each read
//! in one call where the module allows; writing, labelling and removing.

use super::*;

impl Token {
    /// C_GetAttributeValue of `wanted` (type, buffer size) in one call where
    /// the module allows it, else through cryptoki's two calls.
    pub(super) fn attributes(
        &self,
        h: ObjectHandle,
        wanted: &[(AttributeType, usize)],
    ) -> Result<Vec<Attribute>> {
        if let Some(raw) = &self.module.raw {
            let types: Vec<(cryptoki_sys::CK_ATTRIBUTE_TYPE, usize)> = wanted
                .iter()
                .map(|(t, n)| (cryptoki_sys::CK_ATTRIBUTE_TYPE::from(*t), *n))
                .collect();
            let session = self.session();
            if let Some(r) = raw.attributes(session.handle(), h.handle(), &types) {
                let values = r.map_err(error::map)?;
                let mut out = Vec::new();
                for ((t, _), v) in wanted.iter().zip(values) {
                    let Some(v) = v else { continue };
                    if let Some(a) = attribute_from(*t, v) {
                        out.push(a);
                    }
                }
                return Ok(out);
            }
        }
        let types: Vec<AttributeType> = wanted.iter().map(|(t, _)| *t).collect();
        self.session().get_attributes(h, &types).map_err(error::map)
    }

    /// The certificate objects this token's searches found, by CKA_ID:
    /// handles stay valid for the whole application (any session, logged
    /// in or not) until the object is destroyed. Empty for a card of
    /// several tokens (their handles belong to each token).
    pub fn certificate_handles(&self) -> Vec<(Vec<u8>, ObjectHandle)> {
        if !self.siblings.is_empty() {
            return Vec::new();
        }
        let cert = class_key(ObjectClass::CERTIFICATE);
        lock(&self.handles)
            .iter()
            .filter(|((class, _), _)| *class == cert)
            .map(|((_, id), h)| (id.clone(), *h))
            .collect()
    }

    /// The CKA_VALUE of object `h` (one call); `None` when the handle no
    /// longer names an object (destroyed, or the token changed) or it
    /// cannot be read; an error only when the token is gone.
    pub fn value_of(&self, h: ObjectHandle) -> Result<Option<Vec<u8>>> {
        match self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)]) {
            Ok(attrs) => Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })),
            Err(e @ TokenError::Removed { .. }) => Err(e),
            // An invalid handle (or anything else the object says): the
            // caller reads afresh.
            Err(_) => Ok(None),
        }
    }

    pub(super) fn cache(&self, class: ObjectClass, id: &[u8], h: ObjectHandle) {
        lock(&self.handles).insert((class_key(class), id.to_vec()), h);
    }

    pub(super) fn forget(&self, h: ObjectHandle) {
        lock(&self.handles).retain(|_, v| *v != h);
    }

    pub(super) fn find(&self, template: &[Attribute]) -> Result<Vec<ObjectHandle>> {
        self.session().find_objects(template).map_err(error::map)
    }

    /// Every X.509 certificate object on the token (no login needed): one
    /// search, one attribute read per certificate.
    pub fn certificates(&self) -> Result<Vec<CertObject>> {
        let mut out = self.certificates_here()?;
        for s in &self.siblings {
            for c in s.certificates_here()? {
                if !out.iter().any(|o| o.id == c.id && o.der == c.der) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    pub(super) fn certificates_here(&self) -> Result<Vec<CertObject>> {
        let handles = self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ])?;
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let attrs = self.attributes(
                h,
                &[
                    (AttributeType::Id, ID_MAX),
                    (AttributeType::Label, LABEL_MAX),
                    (AttributeType::Value, CERT_VALUE_MAX),
                ],
            )?;
            let mut c = CertObject {
                id: Vec::new(),
                label: String::new(),
                der: Vec::new(),
            };
            for a in attrs {
                match a {
                    Attribute::Id(v) => c.id = v,
                    Attribute::Label(v) => c.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Value(v) => c.der = v,
                    _ => {}
                }
            }
            if !c.der.is_empty() {
                self.cache(ObjectClass::CERTIFICATE, &c.id, h);
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The objects carrying this CKA_ID (certificates, public and private
    /// keys), each read in one call: what the retire step checks before it
    /// deletes anything.
    pub fn objects_with_id(&self, id: &[u8]) -> Result<Vec<IdObject>> {
        if id.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for h in self.find(&[Attribute::Id(id.to_vec())])? {
            let attrs = self.attributes(
                h,
                &[
                    (AttributeType::Class, 8),
                    (AttributeType::Value, CERT_VALUE_MAX),
                    (AttributeType::KeyType, 8),
                    (AttributeType::Modulus, MODULUS_MAX),
                    (AttributeType::PublicExponent, 16),
                    (AttributeType::EcPoint, 128),
                ],
            )?;
            let mut class = None;
            let mut value = None;
            let (mut kt, mut n, mut e, mut point) = (None, None, None, None);
            for a in attrs {
                match a {
                    Attribute::Class(c) => class = Some(c),
                    Attribute::Value(v) => value = Some(v),
                    Attribute::KeyType(t) => kt = Some(t),
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    Attribute::EcPoint(v) => point = Some(v),
                    _ => {}
                }
            }
            let Some(class) = class else { continue };
            if ![
                ObjectClass::CERTIFICATE,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::PRIVATE_KEY,
            ]
            .contains(&class)
            {
                continue;
            }
            let spki = spki_from_parts(kt, n, e, point).ok();
            out.push(IdObject {
                class,
                value: (class == ObjectClass::CERTIFICATE)
                    .then_some(value)
                    .flatten(),
                spki,
                handle: h,
            });
        }
        Ok(out)
    }

    /// Destroy these objects (from [`Token::objects_with_id`]).
    pub fn destroy(&self, objects: &[IdObject]) -> Result<usize> {
        let mut n = 0;
        for o in objects {
            self.session()
                .destroy_object(o.handle)
                .map_err(error::map)?;
            self.forget(o.handle);
            n += 1;
        }
        Ok(n)
    }

    pub(super) fn key_handle(&self, class: ObjectClass, id: &[u8]) -> Result<Option<ObjectHandle>> {
        if let Some(h) = lock(&self.handles).get(&(class_key(class), id.to_vec())) {
            return Ok(Some(*h));
        }
        let found = self
            .find(&[Attribute::Class(class), Attribute::Id(id.to_vec())])?
            .into_iter()
            .next();
        if let Some(h) = found {
            self.cache(class, id, h);
        }
        Ok(found)
    }

    /// The private key with this CKA_ID, with its attributes (needs login).
    pub fn private_key(&self, id: &[u8]) -> Result<Option<PrivateKeyInfo>> {
        if let Some(m) = self.elsewhere(id) {
            return m.private_key(id);
        }
        let Some(h) = self.key_handle(ObjectClass::PRIVATE_KEY, id)? else {
            return Ok(None);
        };
        let attrs = self
            .session()
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::KeyType,
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Sign,
                    AttributeType::Local,
                    AttributeType::AlwaysAuthenticate,
                ],
            )
            .map_err(error::map)?;
        let mut k = PrivateKeyInfo {
            id: hex::encode(id),
            label: String::new(),
            key_type: String::new(),
            token: false,
            private: false,
            sensitive: false,
            // Unknown means possibly extractable.
            extractable: true,
            never_extractable: false,
            always_sensitive: false,
            sign: false,
            local: false,
            always_authenticate: false,
        };
        for a in attrs {
            match a {
                Attribute::Label(v) => k.label = String::from_utf8_lossy(&v).into_owned(),
                Attribute::KeyType(t) => {
                    k.key_type = if t == KeyType::RSA {
                        "rsa".into()
                    } else if t == KeyType::EC {
                        "ec".into()
                    } else {
                        format!("{t}")
                    }
                }
                Attribute::Token(v) => k.token = v,
                Attribute::Private(v) => k.private = v,
                Attribute::Sensitive(v) => k.sensitive = v,
                Attribute::Extractable(v) => k.extractable = v,
                Attribute::NeverExtractable(v) => k.never_extractable = v,
                Attribute::AlwaysSensitive(v) => k.always_sensitive = v,
                Attribute::Sign(v) => k.sign = v,
                Attribute::Local(v) => k.local = v,
                Attribute::AlwaysAuthenticate(v) => k.always_authenticate = v,
                _ => {}
            }
        }
        Ok(Some(k))
    }

    /// The public key object with this CKA_ID as DER SubjectPublicKeyInfo.
    pub fn public_key(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(m) = self.elsewhere(id) {
            return m.public_key(id);
        }
        let Some(h) = self.key_handle(ObjectClass::PUBLIC_KEY, id)? else {
            return Ok(None);
        };
        self.spki_of(h).map(Some)
    }

    pub(super) fn spki_of(&self, h: ObjectHandle) -> Result<Vec<u8>> {
        let attrs = self.attributes(
            h,
            &[
                (AttributeType::KeyType, 8),
                (AttributeType::Modulus, MODULUS_MAX),
                (AttributeType::PublicExponent, 16),
                (AttributeType::EcPoint, 128),
            ],
        )?;
        let (mut kt, mut n, mut e, mut point) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => kt = Some(t),
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        spki_from_parts(kt, n, e, point)
    }

    /// Remove the certificate with this CKA_ID if it holds `der`, through
    /// this token's session (logged in as the card wants it). `Ok(false)`:
    /// no such certificate here.
    pub fn delete_certificate_if(&self, id: &[u8], der: &[u8]) -> Result<bool> {
        let mut removed = false;
        for h in self.find(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::Id(id.to_vec()),
        ])? {
            let value = self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)])?;
            if value
                .iter()
                .any(|a| matches!(a, Attribute::Value(v) if v == der))
            {
                self.session().destroy_object(h).map_err(error::map)?;
                self.forget(h);
                removed = true;
            }
        }
        Ok(removed)
    }

    pub(super) fn destroy_quietly(&self, handles: &[ObjectHandle]) {
        let s = self.session();
        for h in handles {
            if let Err(e) = s.destroy_object(*h) {
                log::warn!("could not remove an incomplete object from the token: {e}");
            }
        }
    }

    /// Store a certificate under `id` with the attributes browsers and
    /// `pkcs11-tool` expect (subject, issuer and serial from the certificate).
    pub fn write_certificate(&self, id: &[u8], label: &str, der: &[u8]) -> Result<()> {
        let malformed = |e: String| TokenError::Malformed(format!("certificate to store: {e}"));
        let cert = Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        let (issuer, subject) = crate::rawcert::raw_issuer_subject(der)
            .ok_or_else(|| malformed("no issuer or subject".into()))?;
        let serial = cert
            .tbs_certificate()
            .serial_number()
            .to_der()
            .map_err(|e| malformed(e.to_string()))?;
        let template = [
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(subject),
            Attribute::Issuer(issuer),
            // CKA_SERIAL_NUMBER is the DER INTEGER, tag and length included.
            Attribute::SerialNumber(serial),
            Attribute::Value(der.to_vec()),
        ];
        let h = self
            .session()
            .create_object(&template)
            .map_err(|e| match error::map(e) {
                TokenError::Full { .. } => TokenError::Full {
                    what: "the new certificate".into(),
                },
                other => other,
            })?;
        self.cache(ObjectClass::CERTIFICATE, id, h);
        Ok(())
    }

    /// Set CKA_LABEL on the key pair with this CKA_ID (a certificate gets
    /// its label when it is written).
    pub fn set_key_label(&self, id: &[u8], label: &str) -> Result<()> {
        for class in [ObjectClass::PUBLIC_KEY, ObjectClass::PRIVATE_KEY] {
            if let Some(h) = self.key_handle(class, id)? {
                self.session()
                    .update_attributes(h, &[Attribute::Label(label.as_bytes().to_vec())])
                    .map_err(error::map)?;
            }
        }
        Ok(())
    }

    /// The certificate with this CKA_ID as stored (CKA_VALUE), read through
    /// a handle already known where possible.
    pub fn certificate_value(&self, id: &[u8]) -> Result<Option<Vec<u8>>> {
        for s in &self.siblings {
            if let Some(v) = s.certificate_value(id)? {
                return Ok(Some(v));
            }
        }
        let Some(h) = self.key_handle(ObjectClass::CERTIFICATE, id)? else {
            return Ok(None);
        };
        let attrs = self.attributes(h, &[(AttributeType::Value, CERT_VALUE_MAX)])?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        }))
    }

    /// CKA_IDs of private keys carrying this label (for finding a candidate
    /// key whose generation was interrupted before it was journalled).
    pub fn private_key_ids_with_label(&self, label: &str) -> Result<Vec<Vec<u8>>> {
        let handles = self.find(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        let mut ids = Vec::new();
        for h in handles {
            for a in self
                .session()
                .get_attributes(h, &[AttributeType::Id])
                .map_err(error::map)?
            {
                if let Attribute::Id(id) = a {
                    ids.push(id);
                }
            }
        }
        Ok(ids)
    }

    /// Remove every object of these classes with this CKA_ID; returns how many.
    /// An empty CKA_ID names nothing: it is refused, since a search for it
    /// would match every object whose CKA_ID is empty.
    pub fn delete(&self, id: &[u8], classes: &[ObjectClass]) -> Result<usize> {
        if id.is_empty() {
            return Err(TokenError::Unsupported {
                what: "deleting objects by an empty CKA_ID".into(),
            });
        }
        let mut n = 0;
        for class in classes {
            for h in self.find(&[Attribute::Class(*class), Attribute::Id(id.to_vec())])? {
                self.session().destroy_object(h).map_err(error::map)?;
                self.forget(h);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove the certificate, public and private key with this CKA_ID.
    pub fn delete_all(&self, id: &[u8]) -> Result<usize> {
        self.delete(
            id,
            &[
                ObjectClass::CERTIFICATE,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::PRIVATE_KEY,
            ],
        )
    }
}

/// A public key's SubjectPublicKeyInfo from its attributes.
pub(super) fn spki_from_parts(
    kt: Option<KeyType>,
    n: Option<Vec<u8>>,
    e: Option<Vec<u8>>,
    point: Option<Vec<u8>>,
) -> Result<Vec<u8>> {
    let malformed = |what: &str| TokenError::Malformed(what.to_string());
    match kt {
        Some(t) if t == KeyType::RSA => {
            let (n, e) = n
                .zip(e)
                .ok_or_else(|| malformed("RSA public key without modulus"))?;
            keys::rsa_spki(&n, &e).map_err(|e| malformed(&format!("RSA public key: {e}")))
        }
        Some(t) if t == KeyType::EC => {
            let point = point
                .as_deref()
                .and_then(keys::ec_point_from_attribute)
                .ok_or_else(|| {
                    malformed("EC public key that is not an uncompressed P-256 point")
                })?;
            keys::ec_p256_spki(&point).map_err(|e| malformed(&format!("EC public key: {e}")))
        }
        _ => Err(TokenError::Unsupported {
            what: "keys other than RSA and EC P-256".into(),
        }),
    }
}

/// An attribute value read in one call, as cryptoki's typed attribute.
pub(super) fn attribute_from(t: AttributeType, v: Vec<u8>) -> Option<Attribute> {
    // A CK_ULONG as the platform's C compiler lays it out: 8 bytes on
    // Linux, 4 on Windows (LLP64), in the machine's byte order.
    let ulong = |v: &[u8]| -> Option<cryptoki_sys::CK_ULONG> {
        let bytes: [u8; std::mem::size_of::<cryptoki_sys::CK_ULONG>()] = v.try_into().ok()?;
        Some(cryptoki_sys::CK_ULONG::from_ne_bytes(bytes))
    };
    Some(match t {
        AttributeType::Id => Attribute::Id(v),
        AttributeType::Label => Attribute::Label(v),
        AttributeType::Value => Attribute::Value(v),
        AttributeType::Modulus => Attribute::Modulus(v),
        AttributeType::PublicExponent => Attribute::PublicExponent(v),
        AttributeType::EcPoint => Attribute::EcPoint(v),
        AttributeType::Class => Attribute::Class(ObjectClass::try_from(ulong(&v)?).ok()?),
        AttributeType::KeyType => Attribute::KeyType(KeyType::try_from(ulong(&v)?).ok()?),
        _ => return None,
    })
}
