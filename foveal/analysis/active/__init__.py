"""Pool-based active learning: rank unlabelled images for labelling (``query``), and replay the loop
on a labelled dataset to compare strategies (``simulate``)."""
