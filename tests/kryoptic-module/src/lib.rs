//! kryoptic (<https://github.com/latchset/kryoptic>) as a PKCS#11 module
//! for certagent's tests: a second, independent soft token beside SoftHSM.
//!
//! kryoptic-lib implements every PKCS#11 function but leaves the exported
//! entry points to the crate that builds the shared library. This one
//! exports only `C_GetFunctionList` (the PKCS#11 2.40 table): without
//! `C_GetInterface`, OpenSC's pkcs11-spy in front of it traces every call
//! instead of handing the 3.x interface through untraced.
//!
//! Storage comes from the file `KRYOPTIC_CONF` names (one `[[slots]]`
//! entry with `dbtype = "sqlite"` and `dbargs` the database file).

use kryoptic_lib::pkcs11::{CK_FUNCTION_LIST_PTR_PTR, CK_RV};

/// The PKCS#11 entry point: kryoptic's own function list.
///
/// # Safety
///
/// `list` must be null or point to writable memory for one pointer, as
/// PKCS#11 requires of the caller; kryoptic checks it for null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    kryoptic_lib::fns::general::fn_get_function_list(list)
}
