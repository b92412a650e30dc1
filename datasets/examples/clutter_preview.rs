//! Writes a PNG grid of clutter images (one row per difficulty, targets' classes printed) so the
//! variant can be looked at: `cargo run -p datasets --example clutter_preview -- OUT.png [N]`.

use datasets::{Clutter, ClutterConfig, Dataset, FashionMnist};
use image::{GrayImage, Luma};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "clutter_preview.png".into());
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let fm = FashionMnist::locate_and_load(None)?;
    let difficulties = [0.0f32, 0.25, 0.5, 0.75, 1.0];
    let (zoom, side) = (4u32, 28u32);
    let cell = side * zoom + 4;
    let mut grid = GrayImage::from_pixel(
        cell * n as u32,
        cell * difficulties.len() as u32,
        Luma([64]),
    );
    for (row, &difficulty) in difficulties.iter().enumerate() {
        let cfg = ClutterConfig {
            difficulty,
            ..ClutterConfig::new(n, 1)
        };
        let set = Clutter::generate(&fm.train, &cfg)?;
        let names = set.class_names();
        let labels: Vec<_> = set
            .images
            .labels()
            .iter()
            .map(|&l| names[l].as_str())
            .collect();
        println!("difficulty {difficulty}: {labels:?}");
        for i in 0..n {
            let img = set.images.image(i).ok_or("image out of range")?;
            for y in 0..side * zoom {
                for x in 0..side * zoom {
                    let v = img[((y / zoom) * side + x / zoom) as usize];
                    grid.put_pixel(i as u32 * cell + x, row as u32 * cell + y, Luma([v]));
                }
            }
        }
    }
    grid.save(&out)?;
    println!("wrote {out}");
    Ok(())
}
