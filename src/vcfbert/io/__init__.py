"""Readers and writers: VCF/BCF (cyvcf2, pysam) and HDF5 genotype stores."""
