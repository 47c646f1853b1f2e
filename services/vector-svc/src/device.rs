//! Where dense search runs, decided once when vector-svc starts (`vector.device`).
//!
//! | `vector.device` | built with `gpu`, GPU usable | built with `gpu`, none | built without `gpu` |
//! |---|---|---|---|
//! | `auto` (default) | GPU | CPU, degraded | CPU |
//! | `gpu` | GPU | CPU, degraded | CPU, degraded |
//! | `cpu` | CPU | CPU | CPU |
//!
//! Degraded is not down: searches are served (from FAISS on the CPU) and health stays SERVING;
//! `Info` and `/ready` carry the reason.

use codeintel_config::VectorConfig;

/// The chosen device and, when it is not the one asked for, why.
pub struct Placement {
    #[cfg(feature = "gpu")]
    pub gpu: Option<std::sync::Arc<crate::gpu::Gpu>>,
    /// `cpu`, or the GPU's description.
    pub device: String,
    /// Set when search runs on the CPU although a GPU was wanted.
    pub degraded: Option<String>,
    /// Share of the GPU's free memory one repo's vectors may take.
    pub memory_fraction: f64,
}

impl Placement {
    pub fn cpu() -> Self {
        Self {
            #[cfg(feature = "gpu")]
            gpu: None,
            device: "cpu".into(),
            degraded: None,
            memory_fraction: 0.0,
        }
    }

    pub fn choose(cfg: &VectorConfig) -> Self {
        match cfg.device.as_str() {
            "cpu" => Self::cpu(),
            want => Self::gpu_or_cpu(cfg, want == "gpu"),
        }
    }

    #[cfg(not(feature = "gpu"))]
    fn gpu_or_cpu(_cfg: &VectorConfig, required: bool) -> Self {
        let mut p = Self::cpu();
        if required {
            p.degraded = Some(
                "vector.device is `gpu` but this vector-svc was built without the `gpu` feature \
                 (cargo build --release -p vector-svc --features gpu); serving from the CPU"
                    .into(),
            );
        }
        p
    }

    #[cfg(feature = "gpu")]
    fn gpu_or_cpu(cfg: &VectorConfig, _required: bool) -> Self {
        match crate::gpu::Gpu::open(cfg.gpu_ordinal) {
            Ok(gpu) => Self {
                device: gpu.describe(),
                gpu: Some(gpu),
                degraded: None,
                memory_fraction: cfg.gpu_memory_fraction,
            },
            Err(why) => {
                let mut p = Self::cpu();
                p.degraded = Some(format!("no usable GPU ({why}); serving from the CPU"));
                p
            }
        }
    }

    pub fn on_gpu(&self) -> bool {
        #[cfg(feature = "gpu")]
        return self.gpu.is_some();
        #[cfg(not(feature = "gpu"))]
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_never_degraded() {
        let cfg = VectorConfig { device: "cpu".into(), ..VectorConfig::default() };
        let p = Placement::choose(&cfg);
        assert_eq!(p.device, "cpu");
        assert!(p.degraded.is_none());
        assert!(!p.on_gpu());
    }

    #[test]
    fn a_gpu_that_is_not_there_degrades_to_the_cpu() {
        // No machine has GPU 4096; in a CPU-only build `gpu` cannot be honoured at all.
        let cfg = VectorConfig { device: "gpu".into(), gpu_ordinal: 4096, ..VectorConfig::default() };
        let p = Placement::choose(&cfg);
        assert_eq!(p.device, "cpu");
        assert!(!p.on_gpu());
        let why = p.degraded.expect("degraded");
        assert!(why.ends_with("serving from the CPU"), "{why}");
        #[cfg(not(feature = "gpu"))]
        assert!(why.contains("without the `gpu` feature"), "{why}");
        #[cfg(feature = "gpu")]
        assert!(why.starts_with("no usable GPU"), "{why}");
    }

    #[test]
    fn auto_without_the_feature_is_plain_cpu() {
        let cfg = VectorConfig { gpu_ordinal: 4096, ..VectorConfig::default() };
        let p = Placement::choose(&cfg);
        assert_eq!(p.device, "cpu");
        // A GPU build asked for `auto` expects a GPU: its absence is reported.
        assert_eq!(p.degraded.is_some(), cfg!(feature = "gpu"));
    }

    #[cfg(feature = "gpu")]
    #[test]
    #[ignore = "needs a CUDA GPU; runs on a GPU host by scripts/gpu-check.sh (--include-ignored)"]
    fn auto_takes_the_gpu_when_there_is_one() {
        let p = Placement::choose(&VectorConfig::default());
        assert!(p.on_gpu(), "{:?}", p.degraded);
        assert!(p.device.starts_with("gpu 0: "), "{}", p.device);
        assert!(p.degraded.is_none());
    }
}
