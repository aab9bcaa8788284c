"""A one-button demo: sample."""


def build_demo(pipeline_or_path):
    import gradio as gr
    import torch

    from hubgen.pipeline_utils import make_grid

    from .pipeline import PixelPipeline

    pipe = pipeline_or_path if isinstance(pipeline_or_path, PixelPipeline) else PixelPipeline.from_pretrained(
        pipeline_or_path)  # fmt: skip

    def draw(seed):
        images = pipe(16, generator=torch.Generator().manual_seed(int(seed)), output_type="pt").images
        return make_grid(images, nrow=4)

    with gr.Blocks() as demo:
        seed = gr.Number(0, label="Seed", precision=0, interactive=True)
        button = gr.Button("Sample", variant="primary")
        out = gr.Image(type="pil", format="png")
        button.click(draw, seed, out, api_name="sample")
    return demo
