//! Loading the GGUF exactly as `inference/src/lib.rs` does, for the
//! examples that call mistral.rs directly. (The conductor is a binary
//! crate, so its examples cannot call `inference.rs` itself.)

use std::sync::Arc;

use mistralrs::Device;
use mistralrs::core::{
    AutoDeviceMapParams, DefaultSchedulerMethod, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, ModelDType,
    Pipeline, SchedulerConfig, TokenSource,
};

/// `inference.rs`'s `load_gguf_f32`, with the dtype a parameter.
pub fn load_gguf(
    dir: String,
    file: String,
    device: &Device,
    dtype: &ModelDType,
) -> anyhow::Result<Arc<tokio::sync::Mutex<dyn Pipeline + Send + Sync>>> {
    let loader =
        GGUFLoaderBuilder::new(None, None, dir, vec![file], GGUFSpecificConfig { topology: None }, false, None).build();
    loader.load_model_from_hf(
        None,
        TokenSource::None,
        dtype,
        device,
        true,
        DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
        None,
        None,
    )
}

/// `inference.rs`'s scheduler, with the batch size a parameter.
pub fn scheduler(batch: usize) -> SchedulerConfig {
    SchedulerConfig::DefaultScheduler {
        method: DefaultSchedulerMethod::Fixed(
            std::num::NonZeroUsize::new(batch).unwrap_or(std::num::NonZeroUsize::MIN),
        ),
    }
}
