"""Model parts: the ViT encoder, the MAE-style student, pseudo-label heads, EMA teachers, masking."""

from plaml_lab.model.heads import PLHead
from plaml_lab.model.mae import Student
from plaml_lab.model.masking import block_noise, mask_from_noise, random_masking
from plaml_lab.model.teachers import Teacher, ema_update
from plaml_lab.model.vit import ViTEncoder, get_2d_sincos_pos_embed

__all__ = ["PLHead", "Student", "Teacher", "ViTEncoder", "block_noise", "ema_update",
           "get_2d_sincos_pos_embed", "mask_from_noise", "random_masking"]
