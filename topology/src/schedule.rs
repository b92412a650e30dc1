//! Presentation schedules: which frame the first area sees at each step (SPEC §3).

use serde::{Deserialize, Serialize};
use tensor::{Error, Result, Tensor};

/// How images are shown over the unroll.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Presentation {
    /// The image for steps `0..image_off`, then blank (the model's `image_off`, 12 in the zoo).
    Default,
    /// 26 steps, image off at step 10 (100 ms on, 260 ms in all).
    Neural,
    /// The image at every step.
    Constant,
    /// The image for steps `0..image_off`, then blank.
    OnOff {
        /// First blank step.
        image_off: usize,
    },
}

/// The blank frame: the constant 0.5 in normalised input space, as the reference does.
pub const DEFAULT_BLANK: f32 = 0.5;

impl Presentation {
    /// Steps the schedule implies (`None`: use the model's default).
    pub fn implied_steps(&self) -> Option<usize> {
        match self {
            Presentation::Neural => Some(26),
            _ => None,
        }
    }

    /// First blank step given the model's default `image_off` (`usize::MAX` = never blank).
    pub fn image_off(&self, model_default: usize) -> usize {
        match self {
            Presentation::Default => model_default,
            Presentation::Neural => 10,
            Presentation::Constant => usize::MAX,
            Presentation::OnOff { image_off } => *image_off,
        }
    }
}

/// The input of an unroll: one image shown on a schedule, or an explicit frame per step.
#[derive(Clone, Debug)]
pub enum Frames {
    /// `[N, C, H, W]` shown on `presentation`, `blank` filling the off steps.
    Image {
        /// `[N, C, H, W]`.
        image: Tensor,
        /// When the image is on.
        presentation: Presentation,
        /// The value of every pixel of a blank frame.
        blank: f32,
    },
    /// One `[N, C, H, W]` frame per step (a 5-D movie, step-major).
    Sequence(Vec<Tensor>),
}

impl Frames {
    /// An image on the default schedule with the default blank.
    pub fn image(image: Tensor) -> Self {
        Frames::Image {
            image,
            presentation: Presentation::Default,
            blank: DEFAULT_BLANK,
        }
    }

    /// Splits a `[T, N, C, H, W]` movie into frames.
    pub fn from_movie(movie: &Tensor) -> Result<Self> {
        let d = movie.dims();
        if d.len() != 5 {
            return Err(Error::ShapeMismatch {
                op: "Frames::from_movie",
                expected: "a [T, N, C, H, W] tensor".into(),
                got: movie.shape().clone(),
            });
        }
        let per = d[1..].to_vec();
        let sizes = vec![1; d[0]];
        movie
            .split(&sizes, 0)?
            .into_iter()
            .map(|f| f.reshape(per.clone()))
            .collect::<Result<Vec<_>>>()
            .map(Frames::Sequence)
    }

    /// Number of steps the frames determine, if any.
    pub fn steps(&self) -> Option<usize> {
        match self {
            Frames::Image { presentation, .. } => presentation.implied_steps(),
            Frames::Sequence(v) => Some(v.len()),
        }
    }

    /// `[N, C, H, W]` of the frames.
    pub fn frame_dims(&self) -> Result<Vec<usize>> {
        match self {
            Frames::Image { image, .. } => Ok(image.dims().to_vec()),
            Frames::Sequence(v) => {
                v.first()
                    .map(|f| f.dims().to_vec())
                    .ok_or_else(|| Error::InvalidArgument {
                        op: "unroll",
                        msg: "an empty frame sequence".into(),
                    })
            }
        }
    }

    /// Whether the frame at step `t` is blank (given the model's default image_off).
    pub fn is_blank(&self, t: usize, model_image_off: usize) -> bool {
        match self {
            Frames::Image { presentation, .. } => t >= presentation.image_off(model_image_off),
            Frames::Sequence(_) => false,
        }
    }
}
