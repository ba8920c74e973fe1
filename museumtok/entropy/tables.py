"""A module that owns frozen integer probability tables (saved with the checkpoint).

The tables' shapes are only known once they are built (:meth:`update`), so loading a checkpoint
resizes the empty buffers to the saved shapes first (CompressAI does the same).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .coding import TableDecoder, TableEncoder, table_bits


class IntegerTables(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("_table", torch.zeros(0, 0, dtype=torch.int32))   # (T, Lmax) frequencies
        self.register_buffer("_length", torch.zeros(0, dtype=torch.int32))     # (T,) symbols per row, escape included
        self.register_buffer("_offset", torch.zeros(0, dtype=torch.int32))     # (T,) value of each row's symbol 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("_table", "_length", "_offset"):
            key = prefix + name
            if key in state_dict:
                getattr(self, name).resize_(state_dict[key].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def ready(self) -> bool:
        return self._table.numel() > 0

    def _set_tables(self, table: np.ndarray, length: np.ndarray, offset: np.ndarray) -> None:
        self._table = torch.from_numpy(np.ascontiguousarray(table, np.int32)).to(self._table.device)
        self._length = torch.from_numpy(np.ascontiguousarray(length, np.int32)).to(self._table.device)
        self._offset = torch.from_numpy(np.ascontiguousarray(offset, np.int32)).to(self._table.device)

    def numpy_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.ready:
            raise RuntimeError(f"{type(self).__name__}: call update() to build the integer tables before coding")
        return self._table.cpu().numpy(), self._length.cpu().numpy(), self._offset.cpu().numpy()

    # ---- coding by table row -----------------------------------------------------------------
    def encode_symbols(self, enc: TableEncoder, symbols: torch.Tensor, index: torch.Tensor) -> None:
        enc.encode(symbols.cpu().numpy(), index.cpu().numpy(), *self.numpy_tables())

    def decode_symbols(self, dec: TableDecoder, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(dec.decode(index.cpu().numpy(), *self.numpy_tables()))

    def table_bits(self, symbols: torch.Tensor, index: torch.Tensor) -> float:
        """Ideal bits of ``symbols`` under the integer tables (what the coder should spend)."""
        return table_bits(*self.numpy_tables(), symbols.cpu().numpy(), index.cpu().numpy())
