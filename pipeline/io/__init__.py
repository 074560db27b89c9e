"""Reading and writing: formats, readers, writers, kept fields, the output
folder.

`formats` names the formats; `inputs` matches input patterns;
`compression` opens compressed inputs; `ranges` cuts files for the workers;
`record_rules` is the id and text policy; `readers` reads records;
`kept` carries input fields to the outputs; `writers` writes the shards;
`outdir` owns the output folder's names, set-aside, restore and clean-up.
"""
