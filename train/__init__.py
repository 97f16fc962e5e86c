"""Training side of dgnam (Lightning): data, the encoder/classifier module, the DeePSiM generator module."""
