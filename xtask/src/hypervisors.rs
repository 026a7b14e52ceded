//! The hypervisors of the IDL, by name: the list `--backend` accepts
//! (besides `native`) and the size benchmark builds a kernel for each of.

/// The checked model of `idl/`.
pub fn model() -> Result<pvi_codegen::Model, String> {
    match pvi_codegen::check_paths(&["idl".into()]) {
        Ok((_, Ok(model))) => Ok(model),
        Ok((_, Err(_))) => Err("idl/ does not check: run `cargo pvi check idl`".into()),
        Err(e) => Err(format!("idl/: {e}")),
    }
}

/// Every hypervisor of `idl/`, in IDL order.
pub fn names() -> Result<Vec<String>, String> {
    Ok(model()?
        .hypervisors()
        .map(|h| h.name.name.clone())
        .collect())
}

/// The hypervisors of `idl/` that borrow another's ABI (`abi NAME;`), each
/// with that one: its generated module (`pvi_sdk::generated::<NAME>`) is
/// the code such a backend's hypercalls run.
pub fn abis() -> Result<Vec<(String, String)>, String> {
    Ok(model()?
        .hypervisors()
        .filter_map(|h| Some((h.name.name.clone(), h.abi()?.name.clone())))
        .collect())
}
