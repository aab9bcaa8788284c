"""Train the pixel model with hubgen's training helpers: maximum likelihood on dynamically binarized images."""

import argparse

import torch

from hubgen import training as tr
from hubgen.data import binarize


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hubgen train pixels")
    tr.add_common_arguments(p, batch_size=64, learning_rate=0.1, num_epochs=1, accumulation=False)
    args = p.parse_args(argv)
    tr.check_common_arguments(p, args, argv)
    from .evaluation import PixelEvalRequest, evaluate
    from .modeling import PixelModel
    from .pipeline import PixelPipeline

    resume, train_set = tr.prepare_run(args, "PixelPipeline")
    run = tr.start_run(args, "pixels", resume, train_set)
    c, h, _ = train_set.image_shape
    model = PixelModel(sample_size=h, in_channels=c)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    model, optimizer, loader = tr.prepare(run, model, optimizer, tr.make_loader(run))
    max_steps = args.max_train_steps or args.num_epochs * len(loader)
    models, optimizers = {"model": model}, {"model": optimizer}
    tr.restore(run, models, optimizers, {"model": tr.config_dict(run.accelerator.unwrap_model(model))}, max_steps)
    window = []
    for intensities, _ in tr.training_batches(run, loader, max_steps):
        loss = -model(binarize(intensities)).mean()  # -log p(x), nats per image
        if tr.nonfinite(run, loss):
            break
        run.accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        window.append(loss.detach().reshape(1))
        run.step += 1
        run.images_seen += intensities.shape[0] * run.accelerator.num_processes
        if tr.log_due(run, max_steps):
            tr.record(run, {"nll": tr.gather_mean(run, window)[0]})
        if tr.end_of_step(run, max_steps, models, optimizers):
            break
    if run.diverged:
        return tr.stop_diverged(run, "Lower --learning_rate.")
    pipe = PixelPipeline(model=run.accelerator.unwrap_model(model))
    from hubgen.pipeline_utils import card_grid

    grid = card_grid(pipe(16, generator=torch.Generator().manual_seed(0), output_type="pt").images, nrow=4)
    request = PixelEvalRequest(num_images=args.eval_num_images, num_samples=0)
    panels = [("nats / image", {"nll": "-log p(x) (train batch)"}, "linear")]
    evaluation = None if request.skips_everything() else (lambda: evaluate(run.out, request, pipeline=pipe))
    return tr.finish_run(run, pipe, grid, panels, {"pixel_mode": "binary"}, evaluation)


if __name__ == "__main__":
    raise SystemExit(main())
