"""The autoregressive family (PixelCNN, Gated PixelCNN): model so far; pipeline, training, card and demo to come."""
