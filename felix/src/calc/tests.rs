//! `calculate` end to end on small datastores, and a property test that it
//! never panics and is deterministic on arbitrary mixes of resources.
