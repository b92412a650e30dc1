// The state of one cell handed to another: a 64-channel RGC's to a 32-channel one, and an LSTM's
// to a GRU of the same shape.
use cell_zoo::typed::{Gru, Lstm, Map, Rgc};
use tensor::{Device, Result};

fn wrong_width(a: &Rgc<32, 32, 7, 7>, b: &Rgc<32, 64, 7, 7>, x: &Map<32, 7, 7>) -> Result<()> {
    let state = b.zero_state(1, Device::Cpu)?;
    let _ = a.step(x, x, &state)?;
    Ok(())
}

fn wrong_kind(gru: &Gru<8, 8, 4, 4>, lstm: &Lstm<8, 8, 4, 4>, x: &Map<8, 4, 4>) -> Result<()> {
    let state = lstm.zero_state(1, Device::Cpu)?;
    let _ = gru.step(x, &state)?;
    Ok(())
}

fn main() {}
