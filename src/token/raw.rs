//! Single-round-trip forms of three PKCS#11 calls that cryptoki makes in
//! two: the slot list, an object's attributes and a signature.
//!
//! cryptoki asks the module for a size, then for the data; on a USB token
//! each call is an APDU exchange of 5-50 ms, and these three are on every
//! path (status, logon, renewal). PKCS#11 lets a caller offer a buffer of
//! its own instead: when it is large enough the module answers at once, and
//! only when it is not (CKR_BUFFER_TOO_SMALL) does the caller ask again.
//! This module makes that first call through the library's own function
//! list (the same list cryptoki uses, from the same loaded library) and
//! says `None` when the caller should fall back to cryptoki. No crate offers
//! this; it is kept to these three calls, each checked.

use std::path::Path;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, Rv};
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE, CK_FUNCTION_LIST, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV,
    CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG, CK_UNAVAILABLE_INFORMATION,
};

const CKR_OK: CK_RV = 0;
const CKR_BUFFER_TOO_SMALL: CK_RV = 0x150;
const CKR_ATTRIBUTE_SENSITIVE: CK_RV = 0x11;
const CKR_ATTRIBUTE_TYPE_INVALID: CK_RV = 0x12;
const CKR_CRYPTOKI_NOT_INITIALIZED: CK_RV = 0x190;

/// The module's function list.
///
/// Most modules hand out one static list, so this is the list cryptoki
/// initialised. p11-kit's proxy hands out a new, uninitialised instance on
/// every call: there the first call answers CKR_CRYPTOKI_NOT_INITIALIZED,
/// and from then on `Raw` steps aside and cryptoki does everything (that
/// first call touched no token and no state of cryptoki's instance).
pub(super) struct Raw {
    list: *const CK_FUNCTION_LIST,
    aside: std::sync::atomic::AtomicBool,
    // Keeps the library mapped for as long as `list` is used.
    _lib: libloading::Library,
}

// SAFETY: the function list is a static table of the module, which was
// initialised with CKF_OS_LOCKING_OK: its functions may be called from any thread.
unsafe impl Send for Raw {}
// SAFETY: as above; `Raw` holds no mutable state.
unsafe impl Sync for Raw {}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Raw")
    }
}

fn check(rv: CK_RV, function: Function) -> Result<(), CkError> {
    Rv::from(rv).into_result(function)
}

impl Raw {
    /// The function list of the library at `path` (already loaded and
    /// initialised by cryptoki; loading it again maps the same library).
    pub(super) fn load(path: &Path) -> Option<Raw> {
        // SAFETY: loading a PKCS#11 library that this process has loaded already.
        let lib = unsafe { libloading::Library::new(path) }.ok()?;
        let list = {
            // SAFETY: C_GetFunctionList has this type in every PKCS#11 module.
            let get: libloading::Symbol<
                '_,
                unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV,
            > = unsafe { lib.get(b"C_GetFunctionList\0") }.ok()?;
            let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
            // SAFETY: the module writes a pointer to its static list.
            let rv = unsafe { get(&mut list) };
            if rv != CKR_OK || list.is_null() {
                return None;
            }
            list.cast_const()
        };
        Some(Raw {
            list,
            aside: std::sync::atomic::AtomicBool::new(false),
            _lib: lib,
        })
    }

    /// The function list, unless `Raw` stepped aside.
    fn functions(&self) -> Option<&CK_FUNCTION_LIST> {
        if self.aside.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        // SAFETY: checked non-null at load; the list is static in the library we keep mapped.
        Some(unsafe { &*self.list })
    }

    /// Whether `Raw` is still in use (it steps aside for good, see above).
    pub(super) fn active(&self) -> bool {
        self.functions().is_some()
    }

    /// Whether `rv` says this list is not the one cryptoki initialised;
    /// then step aside for good.
    fn not_ours(&self, rv: CK_RV) -> bool {
        let not = rv == CKR_CRYPTOKI_NOT_INITIALIZED;
        if not {
            log::debug!(
                "the module's function list is not cryptoki's (p11-kit's proxy?): one round trip per call from now"
            );
            self.aside.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        not
    }

    /// C_GetSlotList into a buffer of 64 slots. `None`: more slots than
    /// that, or no such function; ask cryptoki.
    pub(super) fn slots(&self, token_present: bool) -> Option<Result<Vec<CK_SLOT_ID>, CkError>> {
        let f = self.functions()?.C_GetSlotList?;
        let mut buf: [CK_SLOT_ID; 64] = [0; 64];
        let mut count: CK_ULONG = 64;
        // SAFETY: `buf` holds `count` slots, as the call is told.
        let rv = unsafe { f(u8::from(token_present), buf.as_mut_ptr(), &mut count) };
        if rv == CKR_BUFFER_TOO_SMALL || self.not_ours(rv) {
            return None;
        }
        Some(check(rv, Function::GetSlotList).map(|()| {
            let n = usize::try_from(count).unwrap_or(0).min(buf.len());
            buf.get(..n).unwrap_or_default().to_vec()
        }))
    }

    /// C_GetMechanismList into a buffer of 512 mechanisms.
    pub(super) fn mechanisms(
        &self,
        slot: CK_SLOT_ID,
    ) -> Option<Result<Vec<CK_MECHANISM_TYPE>, CkError>> {
        let f = self.functions()?.C_GetMechanismList?;
        let mut buf: Vec<CK_MECHANISM_TYPE> = vec![0; 512];
        let mut count: CK_ULONG = 512;
        // SAFETY: `buf` holds `count` entries, as the call is told.
        let rv = unsafe { f(slot, buf.as_mut_ptr(), &mut count) };
        if rv == CKR_BUFFER_TOO_SMALL || self.not_ours(rv) {
            return None;
        }
        Some(check(rv, Function::GetMechanismList).map(|()| {
            buf.truncate(usize::try_from(count).unwrap_or(0).min(512));
            buf
        }))
    }

    /// C_GetAttributeValue with a buffer of `size` bytes per attribute.
    /// Each value is `None` where the object has no such attribute or it
    /// is sensitive. `None` overall: a buffer was too small; ask cryptoki.
    pub(super) fn attributes(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        wanted: &[(CK_ATTRIBUTE_TYPE, usize)],
    ) -> Option<Result<Vec<Option<Vec<u8>>>, CkError>> {
        let f = self.functions()?.C_GetAttributeValue?;
        let mut buffers: Vec<Vec<u8>> = wanted.iter().map(|(_, size)| vec![0u8; *size]).collect();
        let mut template: Vec<CK_ATTRIBUTE> = wanted
            .iter()
            .zip(buffers.iter_mut())
            .map(|((t, _), b)| CK_ATTRIBUTE {
                type_: *t,
                pValue: b.as_mut_ptr().cast(),
                ulValueLen: CK_ULONG::try_from(b.len()).unwrap_or(0),
            })
            .collect();
        let count = CK_ULONG::try_from(template.len()).ok()?;
        // SAFETY: every template entry points at a buffer of the length it states.
        let rv = unsafe { f(session, object, template.as_mut_ptr(), count) };
        match rv {
            CKR_OK | CKR_ATTRIBUTE_SENSITIVE | CKR_ATTRIBUTE_TYPE_INVALID => {}
            CKR_BUFFER_TOO_SMALL => return None,
            other if self.not_ours(other) => return None,
            other => return Some(check(other, Function::GetAttributeValue).map(|()| Vec::new())),
        }
        let mut out = Vec::with_capacity(template.len());
        for (t, mut b) in template.iter().zip(buffers) {
            if t.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                out.push(None);
                continue;
            }
            let len = usize::try_from(t.ulValueLen).ok()?;
            if len > b.len() {
                // The module says it did not fit (some answer so without
                // CKR_BUFFER_TOO_SMALL): ask cryptoki.
                return None;
            }
            b.truncate(len);
            out.push(Some(b));
        }
        Some(Ok(out))
    }

    /// C_Sign (after C_SignInit) into a buffer of 1024 bytes, enough for
    /// RSA-8192 and every ECDSA signature: one call (two if a module wants more).
    pub(super) fn sign(
        &self,
        session: CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Option<Result<Vec<u8>, CkError>> {
        let f = self.functions()?.C_Sign?;
        let data_len = CK_ULONG::try_from(data.len()).ok()?;
        let mut buf = vec![0u8; 1024];
        for _ in 0..2 {
            let mut len = CK_ULONG::try_from(buf.len()).ok()?;
            // SAFETY: `data` and `buf` are valid for the lengths given; the
            // module does not keep the data pointer (single-part sign).
            let rv = unsafe {
                f(
                    session,
                    data.as_ptr().cast_mut(),
                    data_len,
                    buf.as_mut_ptr(),
                    &mut len,
                )
            };
            if self.not_ours(rv) {
                // cryptoki's operation is untouched: it signs instead.
                return None;
            }
            let len = usize::try_from(len).unwrap_or(0);
            if rv == CKR_BUFFER_TOO_SMALL && len > buf.len() && len <= 1 << 16 {
                // The operation stays active (PKCS#11 5.2): ask again with room.
                buf.resize(len, 0);
                continue;
            }
            return Some(check(rv, Function::Sign).map(|()| {
                buf.truncate(len.min(buf.len()));
                buf
            }));
        }
        Some(check(CKR_BUFFER_TOO_SMALL, Function::Sign).map(|()| Vec::new()))
    }
}
