//! The hypervisors of the IDL, by name: the list `--backend` accepts
//! (besides `native`) and the size benchmark builds a kernel for each of.

/// Every hypervisor of `idl/`, in IDL order.
pub fn names() -> Result<Vec<String>, String> {
    match pvi_codegen::check_paths(&["idl".into()]) {
        Ok((_, Ok(model))) => Ok(model.hypervisors().map(|h| h.name.name.clone()).collect()),
        Ok((_, Err(_))) => Err("idl/ does not check: run `cargo pvi check idl`".into()),
        Err(e) => Err(format!("idl/: {e}")),
    }
}
