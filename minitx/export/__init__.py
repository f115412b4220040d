"""Your model leaves minitx: a trained language model written as a Hugging Face folder or a GGUF file.

    python -m minitx.export RUN --to hf FOLDER                    # transformers' AutoModelForCausalLM reads it
    python -m minitx.export RUN --to gguf FILE --type q4_1        # llama.cpp runs it

A minitx language model with RoPE, RMSNorm (pre-norm), SwiGLU and a byte-level BPE is a Llama: the
same block, so the same file formats. Two of minitx's choices have Llama names too: biases on every
linear layer (`attention_bias` and `mlp_bias`), and token vectors scaled by sqrt(D) on the way in,
which a Llama file spells as an input table already scaled and an output head of its own (the
unscaled table). minitx reads both back into the model that was exported.

    exportable.py   what can leave, and the one sentence saying why not
    tensors.py      minitx's weights under a format's names and row order
    hf_folder.py    config.json, model.safetensors, tokenizer files, generation_config.json
    gguf_file.py    the llama architecture's metadata, the tokenizer, the weights in a chosen type
    cli.py          python -m minitx.export, written to a temporary name, then renamed
"""

from .exportable import GGUF_TYPES, export_problem
from .gguf_file import write_gguf
from .hf_folder import write_hf_folder

__all__ = ["GGUF_TYPES", "export_problem", "write_gguf", "write_hf_folder"]
