//! The two FAISS calls the `faiss` crate does not expose safely: a search through a shared
//! (`&`) index with per-call parameters (FAISS's const `search` is thread-safe, so concurrent
//! queries need no lock), and an id selector that excludes tombstoned chunk ids.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr;

use faiss::index::IndexImpl;
use faiss_sys::{
    faiss_IDSelectorBatch_new, faiss_IDSelectorNot_new, faiss_IDSelector_free, faiss_Index_search_with_params,
    faiss_SearchParametersIVF_free, faiss_SearchParametersIVF_new_with, faiss_get_last_error, FaissIDSelector,
    FaissIDSelectorBatch, FaissIDSelectorNot, FaissSearchParameters, FaissSearchParametersIVF,
};

use crate::error::VectorError;

fn check(code: i32) -> Result<(), VectorError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: FAISS returns a thread-local, NUL-terminated message (or null).
    let msg = unsafe {
        let p = faiss_get_last_error();
        if p.is_null() {
            format!("faiss error code {code}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(VectorError::Faiss(msg))
}

/// "Every id except these": an `IDSelectorNot` over an `IDSelectorBatch`. Immutable once built,
/// and FAISS only reads it (`is_member` is const), so one is shared by all searches.
pub struct Exclusion {
    batch: *mut FaissIDSelectorBatch,
    not: *mut FaissIDSelectorNot,
}

// SAFETY: both selectors are read-only after construction.
unsafe impl Send for Exclusion {}
unsafe impl Sync for Exclusion {}

impl Exclusion {
    pub fn new(ids: &[u64]) -> Result<Self, VectorError> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let mut batch = ptr::null_mut();
        // SAFETY: FAISS copies the ids; the pointers are checked before use.
        unsafe {
            check(faiss_IDSelectorBatch_new(&mut batch, ids.len(), ids.as_ptr()))?;
            let mut not = ptr::null_mut();
            if let Err(e) = check(faiss_IDSelectorNot_new(&mut not, batch as *const FaissIDSelector)) {
                faiss_IDSelector_free(batch as *mut FaissIDSelector);
                return Err(e);
            }
            Ok(Self { batch, not })
        }
    }
}

impl Drop for Exclusion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`; `IDSelectorNot` does not own its inner selector.
        unsafe {
            faiss_IDSelector_free(self.not as *mut FaissIDSelector);
            faiss_IDSelector_free(self.batch as *mut FaissIDSelector);
        }
    }
}

/// Searches `nq = queries.len() / d` queries for their top `k`; returns (scores, ids) row-major,
/// ids `-1` where fewer than `k` exist. `nprobe` matters only for IVF indexes.
pub fn search(
    index: &IndexImpl,
    queries: &[f32],
    k: usize,
    nprobe: usize,
    exclude: Option<&Exclusion>,
) -> Result<(Vec<f32>, Vec<i64>), VectorError> {
    let d = faiss::index::Index::d(index) as usize;
    if d == 0 || !queries.len().is_multiple_of(d) {
        return Err(VectorError::InvalidArgument(format!("query length {} is not a multiple of {d}", queries.len())));
    }
    let nq = queries.len() / d;
    let mut scores = vec![0f32; nq * k];
    let mut ids = vec![-1i64; nq * k];
    if nq == 0 || k == 0 {
        return Ok((scores, ids));
    }
    let sel = exclude.map(|e| e.not as *mut FaissIDSelector).unwrap_or(ptr::null_mut());
    // SAFETY: the parameters are created per call (IndexIDMap rewrites `sel` during a search, so
    // they must not be shared) and freed before returning; the buffers hold nq * k entries.
    unsafe {
        let mut params: *mut FaissSearchParametersIVF = ptr::null_mut();
        check(faiss_SearchParametersIVF_new_with(&mut params, sel, nprobe.max(1), 0))?;
        let r = check(faiss_Index_search_with_params(
            index.inner_ptr(),
            nq as i64,
            queries.as_ptr(),
            k as i64,
            params as *const FaissSearchParameters,
            scores.as_mut_ptr(),
            ids.as_mut_ptr(),
        ));
        faiss_SearchParametersIVF_free(params);
        r?;
    }
    Ok((scores, ids))
}
