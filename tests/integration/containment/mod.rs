//! Containing a leak (#18): changing a key at its provider from keywatch, by hand
//! (`keywatch keys deactivate|activate|delete`) and by policy, every change recorded.

mod manual;
mod policy;
