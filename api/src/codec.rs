//! The protobuf codec every generated service and client uses: tonic's prost codec with buffers
//! sized for containerd's 1 MiB content messages.
//!
//! tonic's default buffer starts at 8 KiB and grows in 8 KiB steps, so each 1 MiB WRITE message
//! grew (and re-copied) its decode buffer over a hundred times: 10% of berthd's CPU in an ingest.
//! The buffer is reserved per RPC but only touched as far as messages fill it.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial and growth size of encode/decode buffers: one 1 MiB message plus framing.
pub const BUFFER_SIZE: usize = (1 << 20) + (64 << 10);
/// Encoded bytes after which a streaming encoder yields.
pub const YIELD_THRESHOLD: usize = 1 << 20;

/// tonic's prost codec with [`BUFFER_SIZE`] buffers.
#[derive(Debug)]
pub struct LargeBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LargeBufferCodec<T, U> {
    fn default() -> Self {
        LargeBufferCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for LargeBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
