package main

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func kstatusHealth(u *unstructured.Unstructured) (result, error) {
	res, err := status.Compute(u)
	if err != nil {
		return result{}, err
	}
	return result{Status: res.Status.String(), Message: res.Message}, nil
}
