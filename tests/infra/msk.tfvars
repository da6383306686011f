# checkov's second pass over infra/terraform (tests/pipeline/infra.rs): with the defaults,
# create_msk is false and the MSK resources have count 0, which checkov leaves unchecked.
create_msk                 = true
msk_associate_scram_secret = true
kafka_properties_secret    = true
