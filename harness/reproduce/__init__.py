"""A logged run trained again and compared curve by curve (``reproduction``), with the code it was
trained with (``rebuild``); a logged network's predictions (``prediction``).
"""
