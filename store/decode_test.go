package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/batonhq/baton/job"
)

// BenchmarkDecodeJobs compares the driver's Cursor.Decode with all, which
// decodes with bson.Unmarshal, over the same documents: memory per job is
// what matters when an executor loads 100,000 of them.
func BenchmarkDecodeJobs(b *testing.B) {
	const n = 1000
	docs := make([]any, n)
	for i := range docs {
		docs[i] = job.Job{Name: fmt.Sprintf("job-%d", i), Schedule: "*/5 * * * * *", Timezone: "UTC", CreatedAt: time.Now()}
	}
	cursor := func(b *testing.B) *mongo.Cursor {
		cur, err := mongo.NewCursorFromDocuments(docs, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		return cur
	}
	b.Run("cursor-decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			cur := cursor(b)
			for cur.Next(context.Background()) {
				var j job.Job
				if err := cur.Decode(&j); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := all[job.Job](context.Background(), cursor(b)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
