//! Call Vitals collector: placeholder until the collector crate lands.
