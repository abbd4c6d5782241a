"""Reading the hospital's warehouse: the contract tables or an OMOP CDM, through sql/.

Read only, bound parameters; each query's rows become typed columns or fail naming the
column. Also the feed's freshness and the OMOP code lists.
"""
